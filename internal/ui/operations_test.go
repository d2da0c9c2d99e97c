package ui

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/identity"
)

// TestAccountRightsFromOperationTable: the account page says what a role
// may do with the words of the operation table the decisions use, so that
// it says "remove tags" for the delete role, which may untag, and nothing
// of pushing for the reader role.
func TestAccountRightsFromOperationTable(t *testing.T) {
	f := newFixture(t)
	if _, err := f.ids.CreateUser(context.Background(), owner, identity.UserSpec{Name: "deleter", Role: "delete", Password: "deleter-password-for-tests"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		user, password string
		want, notWant  []string
	}{
		{"deleter", "deleter-password-for-tests",
			[]string{auth.OpUntag.Describe(), auth.OpDeleteManifest.Describe(), auth.OpDeleteRepository.Describe()},
			[]string{auth.OpPull.Describe(), auth.OpReadMetadata.Describe(), "audit log"}},
		{"reader", readerPassword,
			[]string{auth.OpPull.Describe(), auth.OpReadMetadata.Describe(), "See scope maps, tokens", "Read the audit log"},
			[]string{auth.OpPush.Describe(), auth.OpUntag.Describe(), "Manage users"}},
		{"owner", ownerPassword,
			[]string{auth.OpUntag.Describe(), auth.OpWriteAttributes.Describe(), "Manage users and their roles"}, nil},
	}
	for _, tt := range tests {
		r := f.signIn(tt.user, tt.password).get("/account")
		wantStatus(t, r, http.StatusOK)
		for _, w := range tt.want {
			if !strings.Contains(r.body, w) {
				t.Errorf("%s's account page lacks %q", tt.user, w)
			}
		}
		for _, w := range tt.notWant {
			if strings.Contains(r.body, w) {
				t.Errorf("%s's account page says %q", tt.user, w)
			}
		}
	}
}

// TestPortalUntag: a tag can be removed in the portal with content/delete
// (the delete role) as on /v2/ and the REST API, the manifest stays, and
// the change is in the audit log; a reader is refused and sees no form.
func TestPortalUntag(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	idx := putImage(t, f.store, "demo/app", "v1")
	if _, err := f.ids.CreateUser(ctx, owner, identity.UserSpec{Name: "deleter", Role: "delete", Password: "deleter-password-for-tests"}); err != nil {
		t.Fatal(err)
	}
	reader := f.signIn("reader", readerPassword)
	page := reader.get("/repositories/demo/app")
	if strings.Contains(page.body, "/-/untag") {
		t.Error("the reader is shown an untag form")
	}
	wantStatus(t, reader.post("/repositories/demo/app/-/untag", url.Values{"tag": {"v1"}}), http.StatusForbidden)
	if _, err := f.store.Manifest(ctx, "demo/app", "v1"); err != nil {
		t.Fatalf("the reader's refused untag removed the tag: %v", err)
	}

	owner := f.signIn("owner", ownerPassword)
	if page := owner.get("/repositories/demo/app"); !strings.Contains(page.body, `action="/repositories/demo/app/-/untag"`) {
		t.Error("the owner is shown no untag form")
	}
	deleter := f.signIn("deleter", "deleter-password-for-tests")
	deleter.get("/repositories/demo/app")
	r := deleter.post("/repositories/demo/app/-/untag", url.Values{"tag": {"v1"}})
	wantStatus(t, r, http.StatusSeeOther)
	if _, err := f.store.Manifest(ctx, "demo/app", "v1"); err == nil {
		t.Error("the tag is still there")
	}
	if _, err := f.store.Manifest(ctx, "demo/app", idx.String()); err != nil {
		t.Errorf("the manifest went with the tag: %v", err)
	}
	wantStatus(t, deleter.post("/repositories/demo/app/-/untag", url.Values{"tag": {"v1"}}), http.StatusNotFound)
	f.audit.Flush()
	events, err := f.audit.List(ctx, audit.Filter{Kind: audit.KindUntag})
	if err != nil || len(events) != 1 || events[0].Identity != "deleter" || events[0].Tag != "v1" || events[0].Repository != "demo/app" {
		t.Errorf("audit: %+v %v", events, err)
	}
}
