package e2e

import (
	"bytes"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/berth-registry/berth/internal/testutil"
)

// helmPackage is the helm the chart is checked with; scripts/test installs it.
const helmPackage = "helm.sh/helm/v4/cmd/helm@v4.3.2"

// k8s is just enough of a Kubernetes object to check the rendered chart.
type k8s struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec yaml.Node `yaml:"spec"`
}

func helmChart(t *testing.T) (helm, chart string) {
	t.Helper()
	requireE2E(t)
	helm = testutil.LookGoTool(t, "helm", helmPackage)
	root, err := testutil.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return helm, filepath.Join(root, "deploy", "helm", "berth")
}

func runHelm(t *testing.T, helm string, args ...string) (string, error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(helm, args...)
	// helm's own state (caches, repositories, plugins) goes to a
	// throw-away home, not the machine's.
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + home, "HELM_CACHE_HOME=" + home + "/cache",
		"HELM_CONFIG_HOME=" + home + "/config", "HELM_DATA_HOME=" + home + "/data"}
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	if err != nil {
		return out.String(), errors.New(err.Error() + ": " + stderr.String())
	}
	return out.String(), nil
}

var clusterValues = []string{
	"--set", "replicaCount=3",
	"--set", "database.url=postgres://berth:pw@db:5432/berth?sslmode=verify-full",
	"--set", "storage.url=s3://blobs/reg?endpoint=https://s3.example.com&region=eu-west-1",
	"--set", "storage.accessKeyID=AKID",
	"--set", "storage.secretAccessKey=SECRET",
	"--set", "owner.password=first-owner-password",
}

func TestHelmChartLint(t *testing.T) {
	helm, chart := helmChart(t)
	for _, args := range [][]string{nil, clusterValues} {
		if out, err := runHelm(t, helm, append([]string{"lint", "--strict", chart}, args...)...); err != nil {
			t.Errorf("helm lint %v: %v\n%s", args, err, out)
		}
	}
}

func renderChart(t *testing.T, helm, chart string, args ...string) map[string]k8s {
	t.Helper()
	out, err := runHelm(t, helm, append([]string{"template", "reg", chart}, args...)...)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	objs := map[string]k8s{}
	dec := yaml.NewDecoder(strings.NewReader(out))
	for {
		var o k8s
		err := dec.Decode(&o)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("rendered chart is not YAML: %v\n%s", err, out)
		}
		if o.Kind != "" {
			objs[o.Kind] = o
		}
	}
	return objs
}

func TestHelmChartCluster(t *testing.T) {
	helm, chart := helmChart(t)
	objs := renderChart(t, helm, chart, clusterValues...)
	for _, kind := range []string{"Deployment", "Service", "Secret", "PodDisruptionBudget"} {
		if _, ok := objs[kind]; !ok {
			t.Errorf("cluster values render no %s", kind)
		}
	}
	if _, ok := objs["PersistentVolumeClaim"]; ok {
		t.Error("cluster values render a PersistentVolumeClaim: nodes keep nothing on disk")
	}
	var spec struct {
		Replicas int `yaml:"replicas"`
		Strategy struct {
			Type string `yaml:"type"`
		} `yaml:"strategy"`
		Template struct {
			Spec struct {
				Containers []struct {
					Env []struct {
						Name      string `yaml:"name"`
						Value     string `yaml:"value"`
						ValueFrom *struct {
							SecretKeyRef struct {
								Name, Key string
							} `yaml:"secretKeyRef"`
						} `yaml:"valueFrom"`
					} `yaml:"env"`
					ReadinessProbe struct {
						HTTPGet struct {
							Path string `yaml:"path"`
						} `yaml:"httpGet"`
					} `yaml:"readinessProbe"`
					LivenessProbe struct {
						HTTPGet struct {
							Path string `yaml:"path"`
						} `yaml:"httpGet"`
					} `yaml:"livenessProbe"`
				} `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	}
	dep := objs["Deployment"]
	if err := dep.Spec.Decode(&spec); err != nil {
		t.Fatal(err)
	}
	if spec.Replicas != 3 || spec.Strategy.Type != "RollingUpdate" {
		t.Errorf("replicas %d, strategy %s; want 3, RollingUpdate", spec.Replicas, spec.Strategy.Type)
	}
	c := spec.Template.Spec.Containers[0]
	if c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("probes: readiness %q, liveness %q", c.ReadinessProbe.HTTPGet.Path, c.LivenessProbe.HTTPGet.Path)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			env[e.Name] = "secret:" + e.ValueFrom.SecretKeyRef.Key
		} else {
			env[e.Name] = e.Value
		}
	}
	// Secrets reach berth only through a Secret, never as plain values.
	for name, want := range map[string]string{
		"BERTH_DATABASE":        "secret:database-url",
		"AWS_ACCESS_KEY_ID":     "secret:AWS_ACCESS_KEY_ID",
		"AWS_SECRET_ACCESS_KEY": "secret:AWS_SECRET_ACCESS_KEY",
		"BERTH_OWNER_PASSWORD":  "secret:owner-password",
		"BERTH_STORAGE":         "s3://blobs/reg?endpoint=https://s3.example.com&region=eu-west-1",
		"BERTH_NAME":            "berth",
	} {
		if env[name] != want {
			t.Errorf("env %s = %q, want %q", name, env[name], want)
		}
	}
}

func TestHelmChartSingleNode(t *testing.T) {
	helm, chart := helmChart(t)
	objs := renderChart(t, helm, chart)
	if _, ok := objs["PersistentVolumeClaim"]; !ok {
		t.Error("the embedded defaults render no PersistentVolumeClaim for the data")
	}
	if _, ok := objs["PodDisruptionBudget"]; ok {
		t.Error("one replica renders a PodDisruptionBudget, which would block node drains")
	}
	// Several replicas on the embedded defaults would each have their own
	// registry: the chart refuses, and says what to set.
	_, err := runHelm(t, helm, "template", "reg", chart, "--set", "replicaCount=2")
	if err == nil || !strings.Contains(err.Error(), "database.url") {
		t.Errorf("replicaCount=2 without a database: %v, want a refusal naming database.url", err)
	}
}

// TestHelmChartAdminListener: admin.enabled gives the management API and
// the portal a port (--admin-addr) and a Service of their own.
func TestHelmChartAdminListener(t *testing.T) {
	helm, chart := helmChart(t)
	out, err := runHelm(t, helm, "template", "reg", chart, "--set", "admin.enabled=true", "--set", "admin.port=5443")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"name: BERTH_ADMIN_ADDR\n              value: \":5443\"", "name: reg-berth-admin", "containerPort: 5443", "targetPort: admin"} {
		if !strings.Contains(out, want) {
			t.Errorf("admin.enabled renders no %q:\n%s", want, out)
		}
	}
	if out, err := runHelm(t, helm, "lint", "--strict", chart, "--set", "admin.enabled=true"); err != nil {
		t.Errorf("helm lint with admin.enabled: %v\n%s", err, out)
	}
	if out, err := runHelm(t, helm, "template", "reg", chart); err != nil || strings.Contains(out, "ADMIN") {
		t.Errorf("the default renders an admin listener: %v\n%s", err, out)
	}
}
