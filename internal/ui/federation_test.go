package ui

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestFederatedCredentialsSection: the token page lists a token's
// federated credentials and adds and deletes them; bad input is refused
// next to the form and kept; readers see the list but no form.
func TestFederatedCredentialsSection(t *testing.T) {
	f := newFixture(t)
	f.newToken("ci-federated", "content/read")
	b := f.signIn("owner", ownerPassword)
	page := b.get("/tokens/ci-federated")
	wantStatus(t, page, http.StatusOK)
	if !strings.Contains(page.body, `id="federated-credentials"`) || !strings.Contains(page.body, "None: the token logs in with its passwords only.") {
		t.Fatalf("no empty federated section:\n%s", page.body)
	}

	add := url.Values{"fc-name": {"github-main"}, "fc-issuer": {"https://token.actions.githubusercontent.com"},
		"fc-subject": {"repo:acme/app:ref:refs/heads/main"}, "fc-claims": {"repository_owner=acme\r\nenvironment=prod"}}
	r := b.post("/tokens/ci-federated/federated-credentials", add)
	if r.status != http.StatusSeeOther {
		t.Fatalf("add: %d\n%s", r.status, r.body)
	}
	list, err := f.ids.ListFederatedCredentials(owner, "ci-federated")
	if err != nil || len(list) != 1 || list[0].Claims["environment"] != "prod" || list[0].Audience != f.ids.RegistryName() {
		t.Fatalf("stored %+v %v", list, err)
	}
	page = b.get("/tokens/ci-federated")
	for _, want := range []string{"github-main", "repo:acme/app:ref:refs/heads/main", "repository_owner=acme", "OIDC discovery"} {
		if !strings.Contains(page.body, want) {
			t.Errorf("page lacks %q", want)
		}
	}

	// An http issuer is refused next to the form, with what was typed kept.
	bad := url.Values{"fc-name": {"plain-http"}, "fc-issuer": {"http://idp.example"}, "fc-subject": {"someone"}}
	r = b.post("/tokens/ci-federated/federated-credentials", bad)
	wantStatus(t, r, http.StatusUnprocessableEntity)
	if !strings.Contains(r.body, "must use https") || !strings.Contains(r.body, `value="http://idp.example"`) {
		t.Errorf("refusal:\n%s", r.body)
	}
	r = b.post("/tokens/ci-federated/federated-credentials", add)
	wantStatus(t, r, http.StatusUnprocessableEntity)

	// A reader sees the list, not the forms, and may not post them.
	rb := f.signIn("reader", readerPassword)
	page = rb.get("/tokens/ci-federated")
	if !strings.Contains(page.body, "github-main") || strings.Contains(page.body, `id="add-federated"`) {
		t.Errorf("reader's page:\n%s", page.body)
	}
	wantStatus(t, rb.post("/tokens/ci-federated/federated-credentials/github-main/delete", url.Values{}), http.StatusForbidden)

	wantStatus(t, b.post("/tokens/ci-federated/federated-credentials/github-main/delete", url.Values{}), http.StatusSeeOther)
	if list, _ := f.ids.ListFederatedCredentials(owner, "ci-federated"); len(list) != 0 {
		t.Fatalf("not deleted: %+v", list)
	}
}
