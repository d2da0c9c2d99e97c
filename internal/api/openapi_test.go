package api

import (
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/fsck"
	"github.com/berth-registry/berth/internal/gc"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/netrule"
)

type openAPIDoc struct {
	OpenAPI    string                                `json:"openapi"`
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Schemas map[string]*schema `json:"schemas"`
	} `json:"components"`
}

type schema struct {
	Ref                  string             `json:"$ref"`
	Type                 string             `json:"type"`
	Properties           map[string]*schema `json:"properties"`
	Items                *schema            `json:"items"`
	AdditionalProperties any                `json:"additionalProperties"`
}

func loadOpenAPI(t *testing.T) openAPIDoc {
	t.Helper()
	f := newFixture(t)
	rec := f.must(http.StatusOK, "", "GET", "/api/v1/openapi.json", nil)
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var doc openAPIDoc
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatalf("openapi.json is not valid JSON: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	return doc
}

// registeredOperations lists every route the handler serves, as OpenAPI
// paths and lower-case methods.
func registeredOperations(h *Handler) []string {
	ops := []string{"get /api/v1/openapi.json"}
	for _, rt := range h.allRoutes() {
		method, path, _ := strings.Cut(rt.pattern, " ")
		if prefix, ok := strings.CutSuffix(path, "{path...}"); ok {
			for _, sub := range repositoryRoutes {
				if sub.method == method {
					ops = append(ops, strings.ToLower(method)+" "+prefix+sub.shape)
				}
			}
			continue
		}
		ops = append(ops, strings.ToLower(method)+" "+path)
	}
	sort.Strings(ops)
	return ops
}

// TestOpenAPICoversRoutes checks that every route registered in the mux
// (and every route below /repositories/) is in the document, and that the
// document describes no route that does not exist.
func TestOpenAPICoversRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	var documented []string
	for path, item := range doc.Paths {
		for method := range item {
			if method == "parameters" {
				continue
			}
			documented = append(documented, method+" "+path)
		}
	}
	sort.Strings(documented)
	registered := registeredOperations(newFixture(t).h)
	for _, op := range registered {
		if !slices.Contains(documented, op) {
			t.Errorf("route %q is not in openapi.json", op)
		}
	}
	for _, op := range documented {
		if !slices.Contains(registered, op) {
			t.Errorf("openapi.json describes %q, which is not a route", op)
		}
	}
}

// TestOpenAPISchemasMatchTypes checks each schema against the Go type the
// API encodes or decodes, field by field, so that the document cannot drift
// from the code.
func TestOpenAPISchemasMatchTypes(t *testing.T) {
	doc := loadOpenAPI(t)
	types := map[string]any{
		"Error":                       ErrorBody{},
		"ScopeMap":                    ScopeMap{},
		"ScopeMapList":                List[ScopeMap]{},
		"ScopeMapCreate":              ScopeMapCreate{},
		"ScopeMapPatch":               ScopeMapPatch{},
		"ScopeMapDeleted":             ScopeMapDeleted{},
		"Token":                       Token{},
		"TokenList":                   List[Token]{},
		"TokenCreate":                 TokenCreate{},
		"TokenPatch":                  TokenPatch{},
		"GenerateCredentialsRequest":  GenerateCredentialsRequest{},
		"Credentials":                 Credentials{},
		"Admin":                       Admin{},
		"AdminPatch":                  AdminPatch{},
		"RegenerateCredentialRequest": RegenerateCredentialRequest{},
		"User":                        User{},
		"UserList":                    List[User]{},
		"UserCreate":                  UserCreate{},
		"UserPatch":                   UserPatch{},
		"AttributesPatch":             AttributesPatch{},
		"RepositoryList":              RepositoryList{},
		"Repository":                  Repository{},
		"TagList":                     TagList{},
		"ManifestInfo":                ManifestInfo{},
		"AuditEventList":              List[audit.Event]{},
		"GCRequest":                   GCRequest{},
		"GCReport":                    gc.Report{},
		"FsckRequest":                 FsckRequest{},
		"FsckReport":                  fsck.Report{},
		"SigningKey":                  identity.SigningKey{},
		"SigningKeyList":              List[identity.SigningKey]{},
		"NetworkRuleSet":              netrule.Settings{},
		"NetworkRuleSetPatch":         NetworkRuleSetPatch{},
		"IPRuleList":                  IPRuleList{},
		"AllowedAddresses":            AllowedAddresses{},
		"FederatedCredential":         identity.FederatedCredential{},
		"FederatedCredentialList":     List[identity.FederatedCredential]{},
		"FederatedCredentialCreate":   FederatedCredentialCreate{},
	}
	for name, v := range types {
		s := doc.Components.Schemas[name]
		if s == nil {
			t.Errorf("schema %s is missing", name)
			continue
		}
		compareSchema(t, doc, name, s, reflect.TypeOf(v))
	}
}

var timeType = reflect.TypeFor[time.Time]()

var rawJSONType = reflect.TypeFor[json.RawMessage]()

func compareSchema(t *testing.T, doc openAPIDoc, where string, s *schema, typ reflect.Type) {
	t.Helper()
	for s.Ref != "" {
		name := strings.TrimPrefix(s.Ref, "#/components/schemas/")
		if s = doc.Components.Schemas[name]; s == nil {
			t.Errorf("%s: $ref to missing schema %s", where, name)
			return
		}
	}
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	switch {
	case typ == rawJSONType:
		// Any JSON value (a JWK Set is an object).
	case typ == timeType || typ.Kind() == reflect.String:
		if s.Type != "string" {
			t.Errorf("%s: schema type %q, want string", where, s.Type)
		}
	case typ.Kind() == reflect.Slice:
		if s.Type != "array" || s.Items == nil {
			t.Errorf("%s: schema type %q, want array", where, s.Type)
			return
		}
		compareSchema(t, doc, where+"[]", s.Items, typ.Elem())
	case typ.Kind() == reflect.Struct:
		if s.Type != "object" {
			t.Errorf("%s: schema type %q, want object", where, s.Type)
		}
		fields := map[string]reflect.Type{}
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			fields[name] = f.Type
		}
		for name, ft := range fields {
			ps := s.Properties[name]
			if ps == nil {
				t.Errorf("%s: field %q is not in the schema", where, name)
				continue
			}
			compareSchema(t, doc, where+"."+name, ps, ft)
		}
		for name := range s.Properties {
			if _, ok := fields[name]; !ok {
				t.Errorf("%s: schema property %q is not a field of %s", where, name, typ)
			}
		}
	}
}
