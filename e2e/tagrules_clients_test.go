package e2e

import (
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/testutil"
)

// TestTagRulesClients: docker, podman and skopeo with a token whose scope
// map lets it write dev-* tags without content/overwrite: pushing dev-1 is
// allowed, v1 is refused with the tag and the allowed patterns in what the
// client prints, and pushing another image to dev-1 is refused.
func TestTagRulesClients(t *testing.T) {
	srv := startBerth(t)
	cli := newBerthCLI(t, srv)
	cli.must("scope-map", "create", "-n", "dev-tags", "--repository", "tags/*", "content/read",
		"--repository", "tags/*", "content/write", "--tags", "dev-*")
	tok := cli.createToken("dev-pusher", "--scope-map", "dev-tags")
	pw := tok.password["password1"]
	writeDenied := func(repo, tag string) string {
		return msgDenied + ": " + tagDenied(tok.name, "write", tag, repo, "dev-*")
	}
	moveDenied := func(repo, tag string) string {
		return `token "dev-pusher" may not move tag "` + tag + `" of "` + repo + `" to another manifest (it lacks content/overwrite on that tag)`
	}

	t.Run("Docker", func(t *testing.T) {
		d := testutil.StartDockerd(t)
		dc := dockerClient{t, d, srv}
		dc.mustLogin(tok.name, pw)
		dc.mustPush("tags/docker:dev-1")
		out, err := dc.push("tags/docker:v1")
		mustFail(t, "docker push v1", out, err, writeDenied("tags/docker", "v1"))
		out, err = dc.push("tags/docker:dev-1") // a new image
		mustFail(t, "docker push another image to dev-1", out, err, moveDenied("tags/docker", "dev-1"))
	})

	newImage := func(t *testing.T) string {
		return testutil.WriteOCILayout(t, testutil.RandomImage(t, 1, 16<<10), "x")
	}
	t.Run("Podman", func(t *testing.T) {
		pm := testutil.NewPodman(t)
		if out, err := pm.RunInput(pw, "login", "--tls-verify=false", "--username", tok.name, "--password-stdin", srv.Host); err != nil {
			t.Fatalf("podman login: %v\n%s", err, out)
		}
		push := func(layout, tag string) (string, error) {
			id := strings.TrimSpace(pm.MustRun("pull", "--quiet", "oci:"+layout+":x"))
			ref := srv.Host + "/tags/podman:" + tag
			pm.MustRun("tag", id, ref)
			return pm.Run("push", "--tls-verify=false", ref)
		}
		first := newImage(t)
		if out, err := push(first, "dev-1"); err != nil {
			t.Fatalf("podman push dev-1: %v\n%s", err, out)
		}
		out, err := push(first, "v1")
		mustFail(t, "podman push v1", out, err, tagDenied(tok.name, "write", "v1", "tags/podman", "dev-*"))
		out, err = push(newImage(t), "dev-1")
		mustFail(t, "podman push another image to dev-1", out, err, moveDenied("tags/podman", "dev-1"))
	})

	t.Run("Skopeo", func(t *testing.T) {
		sk := testutil.NewSkopeo(t)
		copyTo := func(layout, tag string) (string, error) {
			return sk.Run("copy", "--dest-tls-verify=false", "--dest-creds="+tok.name+":"+pw, "oci:"+layout+":x", "docker://"+srv.Host+"/tags/skopeo:"+tag)
		}
		first := newImage(t)
		if out, err := copyTo(first, "dev-1"); err != nil {
			t.Fatalf("skopeo copy to dev-1: %v\n%s", err, out)
		}
		out, err := copyTo(first, "v1")
		mustFail(t, "skopeo copy to v1", out, err, tagDenied(tok.name, "write", "v1", "tags/skopeo", "dev-*"))
		out, err = copyTo(newImage(t), "dev-1")
		mustFail(t, "skopeo copy of another image to dev-1", out, err, moveDenied("tags/skopeo", "dev-1"))
	})
}
