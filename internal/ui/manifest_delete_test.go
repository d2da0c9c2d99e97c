package ui

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestDeleteManifestAndCopies: a manifest's page deletes it (with the
// tags on it) for those allowed; the repository page offers the digest
// and the pull commands by tag and by digest to copy.
func TestDeleteManifestAndCopies(t *testing.T) {
	f := newFixture(t)
	d := putImage(t, f.store, "demo/app", "v1")
	host := strings.TrimPrefix(f.srv.URL, "http://")
	b := f.signIn("owner", ownerPassword)
	r := b.get("/repositories/demo/app")
	for _, want := range []string{
		`id="dg-v1">` + d.String() + `<`,
		`id="pt-v1">docker pull ` + host + `/demo/app:v1<`,
		`id="pd-v1">docker pull ` + host + `/demo/app@` + d.String() + `<`,
		`data-copy="pd-v1"`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("the repository page lacks %q", want)
		}
	}
	reader := f.signIn("reader", readerPassword)
	if strings.Contains(reader.get("/repositories/demo/app/-/manifests/"+d.String()).body, `id="delete-manifest"`) {
		t.Errorf("a reader is offered to delete a manifest")
	}
	wantStatus(t, reader.post("/repositories/demo/app/-/manifests/"+d.String()+"/delete", url.Values{}), http.StatusForbidden)
	page := b.get("/repositories/demo/app/-/manifests/" + d.String())
	if !strings.Contains(page.body, `id="delete-manifest"`) || !strings.Contains(page.body, `data-confirm="Delete demo/app@`) {
		t.Fatalf("the manifest page lacks its delete button")
	}
	r = b.post("/repositories/demo/app/-/manifests/"+d.String()+"/delete", url.Values{})
	wantStatus(t, r, http.StatusSeeOther)
	if _, err := f.store.Manifest(t.Context(), "demo/app", d.String()); err == nil {
		t.Errorf("the manifest is still there")
	}
	if _, err := f.store.Manifest(t.Context(), "demo/app", "v1"); err == nil {
		t.Errorf("its tag still resolves")
	}
}
