package server_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/berth-registry/berth/internal/identity"
)

var timeZero time.Time

func (e *env) push(repo, user, pass string) error {
	e.t.Helper()
	ref, err := name.ParseReference(e.host()+"/"+repo+":v1", name.Insecure)
	if err != nil {
		e.t.Fatal(err)
	}
	img, err := random.Image(512, 2)
	if err != nil {
		e.t.Fatal(err)
	}
	return remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: user, Password: pass}))
}

func (e *env) pull(repo, user, pass string) error {
	e.t.Helper()
	ref, _ := name.ParseReference(e.host()+"/"+repo+":v1", name.Insecure)
	img, err := remote.Image(ref, remote.WithAuth(&authn.Basic{Username: user, Password: pass}))
	if err != nil {
		return err
	}
	_, err = img.RawConfigFile()
	return err
}

func (e *env) listTags(repo, user, pass string) ([]string, error) {
	repoRef, _ := name.NewRepository(e.host()+"/"+repo, name.Insecure)
	return remote.List(repoRef, remote.WithAuth(&authn.Basic{Username: user, Password: pass}))
}

func statusOf(err error) int {
	var te *transport.Error
	if errors.As(err, &te) {
		return te.StatusCode
	}
	return 0
}

func TestTokenScopes(t *testing.T) {
	e := newEnv(t)
	if err := e.push("other/app", "owner", ownerPassword); err != nil {
		t.Fatalf("owner push: %v", err)
	}
	pushPw, _ := e.newToken("team-push", append(actions("team/*", "content/read", "content/write", "content/overwrite"), actions("team/app", "metadata/read")...)...)
	pullPw, _ := e.newToken("team-pull", actions("team/*", "content/read")...)

	if err := e.push("team/app", "team-push", pushPw); err != nil {
		t.Fatalf("push to allowed repository: %v", err)
	}
	if err := e.push("other/new", "team-push", pushPw); statusOf(err) != http.StatusForbidden {
		t.Fatalf("push outside scope: %v, want 403", err)
	}
	st, body, _ := e.do("POST", "/v2/other/new/blobs/uploads/", basic("team-push", pushPw), nil)
	if st != 403 || !strings.Contains(body, `"DENIED"`) || !strings.Contains(body, `\"other/new\"`) || !strings.Contains(body, "content/write") {
		t.Errorf("denial does not name the repository and the missing action: %d %s", st, body)
	}
	if err := e.pull("team/app", "team-pull", pullPw); err != nil {
		t.Fatalf("pull-only token pull: %v", err)
	}
	if err := e.push("team/app", "team-pull", pullPw); statusOf(err) != http.StatusForbidden {
		t.Fatalf("pull-only token push: %v, want 403", err)
	}
	if err := e.pull("other/app", "team-pull", pullPw); statusOf(err) != http.StatusForbidden {
		t.Fatalf("pull outside scope: %v, want 403", err)
	}
	// metadata/read decides tag listing
	if tags, err := e.listTags("team/app", "team-push", pushPw); err != nil || len(tags) != 1 {
		t.Fatalf("list tags with metadata/read: %v %v", tags, err)
	}
	if _, err := e.listTags("team/app", "team-pull", pullPw); statusOf(err) != http.StatusForbidden {
		t.Fatalf("list tags without metadata/read: %v, want 403", err)
	}

	// catalog shows only what the token may see
	tok := e.accessToken("team-pull", pullPw, "registry:catalog:*")
	st, body, _ = e.do("GET", "/v2/_catalog", bearer(tok), nil)
	if st != 200 || !strings.Contains(body, "team/app") || strings.Contains(body, "other/app") {
		t.Fatalf("catalog for team-pull: %d %s", st, body)
	}

	// disabling applies to the next request, including an access token issued before
	tok = e.accessToken("team-push", pushPw, "repository:team/app:pull,push")
	if st, _, _ := e.do("GET", "/v2/team/app/manifests/v1", bearer(tok), nil); st != 200 {
		t.Fatalf("pull with access token: %d", st)
	}
	setStatus := func(st string) {
		t.Helper()
		if _, err := e.id.UpdateToken(context.Background(), owner, "team-push", identity.TokenUpdate{Status: &st}); err != nil {
			t.Fatal(err)
		}
	}
	setStatus("disabled")
	if st, body, _ := e.do("GET", "/v2/team/app/manifests/v1", bearer(tok), nil); st != 401 {
		t.Fatalf("old access token of a disabled token: %d %s, want 401", st, body)
	}
	if err := e.push("team/app", "team-push", pushPw); statusOf(err) != http.StatusUnauthorized || !strings.Contains(err.Error(), "disabled") {
		t.Fatalf("push with disabled token: %v, want 401 saying disabled", err)
	}
	setStatus("enabled")
	if err := e.push("team/app", "team-push", pushPw); err != nil {
		t.Fatalf("push after re-enable: %v", err)
	}

	// shrinking the scope map narrows access tokens already issued
	tok = e.accessToken("team-push", pushPw, "repository:team/app:pull,push")
	if _, err := e.id.UpdateScopeMap(context.Background(), owner, "team-push-scope-map", identity.ScopeMapUpdate{Remove: actions("team/*", "content/read")}); err != nil {
		t.Fatal(err)
	}
	if st, _, _ := e.do("GET", "/v2/team/app/manifests/v1", bearer(tok), nil); st != 403 {
		t.Fatalf("pull after content/read was removed: %d, want 403", st)
	}
}

func TestPasswordRotation(t *testing.T) {
	e := newEnv(t)
	pw1, pw2 := e.newToken("rotating", actions("app", "content/read", "content/write")...)
	tok1 := e.accessToken("rotating", pw1, "repository:app:pull")
	tok2 := e.accessToken("rotating", pw2, "repository:app:pull")
	if err := e.push("app", "rotating", pw1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.id.DeletePassword(context.Background(), owner, "rotating", "password1"); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.login("rotating", pw1, "repository:app:pull"); st != 401 {
		t.Fatalf("login with deleted password1: %d, want 401", st)
	}
	if st, _, _ := e.do("GET", "/v2/app/manifests/v1", bearer(tok1), nil); st != 401 {
		t.Fatalf("access token from deleted password1: %d, want 401", st)
	}
	if st, _, _ := e.do("GET", "/v2/app/manifests/v1", bearer(tok2), nil); st != 200 {
		t.Fatalf("access token from password2 after deleting password1: %d, want 200", st)
	}
	if err := e.pull("app", "rotating", pw2); err != nil {
		t.Fatalf("pull with password2: %v", err)
	}
	// regenerating password2 revokes what it issued
	creds, err := e.id.GenerateCredentials(context.Background(), owner, "rotating", []string{"password2"}, timeZero)
	if err != nil {
		t.Fatal(err)
	}
	if st, _, _ := e.do("GET", "/v2/app/manifests/v1", bearer(tok2), nil); st != 401 {
		t.Fatalf("access token from regenerated password2: %d, want 401", st)
	}
	if err := e.pull("app", "rotating", creds.Passwords[0].Value); err != nil {
		t.Fatalf("pull with new password2: %v", err)
	}
	// deleting the token revokes everything
	tok := e.accessToken("rotating", creds.Passwords[0].Value, "repository:app:pull")
	if err := e.id.DeleteToken(context.Background(), owner, "rotating"); err != nil {
		t.Fatal(err)
	}
	if st, _, _ := e.do("GET", "/v2/app/manifests/v1", bearer(tok), nil); st != 401 {
		t.Fatalf("access token of a deleted token: %d, want 401", st)
	}
}
