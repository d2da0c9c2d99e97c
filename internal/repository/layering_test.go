package repository_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/api"
	"github.com/berth-registry/berth/internal/repository"
	"github.com/berth-registry/berth/internal/ui"
)

// TestFacesHoldNoMetadataStore: the REST API and the portal hold the
// repository service, never the metadata store itself, so that neither can
// read or change a repository without the service's permission check.
func TestFacesHoldNoMetadataStore(t *testing.T) {
	store := reflect.TypeFor[repository.Metadata]()
	for _, h := range []reflect.Type{reflect.TypeFor[api.Handler](), reflect.TypeFor[ui.Handler]()} {
		for f := range h.Fields() {
			if f.Type.Implements(store) || f.Type == store {
				t.Errorf("%s has field %s of type %s, a metadata store: call the repository service instead", h, f.Name, f.Type)
			}
		}
	}
}

// TestLimiterStepsInOnePlace: the faces that check passwords (token
// endpoint and Basic credentials, REST API, portal) go through
// auth.Limiter.Attempt, and none takes its steps (Guard, Allow, Fail,
// Succeed) itself, where one could be left out or misordered.
func TestLimiterStepsInOnePlace(t *testing.T) {
	steps := map[string]bool{"Guard": true, "Allow": true, "Fail": true, "Succeed": true}
	fset := token.NewFileSet()
	for _, dir := range []string{"../ui", "../api", "../tokenauth"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range files {
			if strings.HasSuffix(name, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, name, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || !steps[sel.Sel.Name] {
					return true
				}
				if x, ok := sel.X.(*ast.SelectorExpr); ok && strings.Contains(strings.ToLower(x.Sel.Name), "limiter") {
					t.Errorf("%s: calls %s.%s itself: use Limiter.Attempt", fset.Position(call.Pos()), x.Sel.Name, sel.Sel.Name)
				}
				return true
			})
		}
	}
}
