package auth

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports keeps the package's imports to the standard library and
// x/crypto's argon2: it is the security core, so every dependency is code
// to audit, and it must stay free of storage and HTTP.
func TestImports(t *testing.T) {
	allowed := map[string]bool{"golang.org/x/crypto/argon2": true}
	forbidden := []string{"net/http", "database/sql", "os", "log"}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if strings.Contains(strings.SplitN(path, "/", 2)[0], ".") && !allowed[path] {
				t.Errorf("%s imports %s: only the standard library and %v are allowed", name, path, allowed)
			}
			for _, fb := range forbidden {
				if path == fb {
					t.Errorf("%s imports %s: the auth core does no I/O", name, path)
				}
			}
		}
	}
}
