package scenario

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cnimatrix/cnimatrix/internal/catalog"
)

func load(t *testing.T, body string) (*Scenario, error) {
	t.Helper()
	cat, err := catalog.Load()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "s.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return Load(p, cat, "/repo")
}

func TestValidScenarioExpands(t *testing.T) {
	s, err := load(t, `
name: offline
cni:
  name: flannel
  versions: [v0.28.10]
kubernetes: [v1.37.2, v1.36.3]
arch: amd64
provider: auto
nodes: 2
timeouts:
  cluster: 90s
`)
	if err != nil {
		t.Fatal(err)
	}
	cells := s.Cells()
	if len(cells) != 2 {
		t.Fatalf("want 2 cells, got %d", len(cells))
	}
	if got := s.CNI.Manifests["v0.28.10"]; got != "/repo/fixtures/cni/flannel/kube-flannel.yaml" {
		t.Errorf("manifest path %q", got)
	}
	if s.Timeouts.Cluster.Seconds() != 90 {
		t.Errorf("cluster timeout %v", s.Timeouts.Cluster)
	}
	if cells[0].Provider != s.ProviderFor("amd64") {
		t.Errorf("provider %q", cells[0].Provider)
	}
}

func TestBadInputNamesFileAndLine(t *testing.T) {
	cases := map[string]struct {
		body string
		want string
	}{
		"malformed":        {"name: x\ncni: [\n", "s.yaml:"},
		"unknown field":    {"name: x\ncni:\n  name: flannel\n  versions: [v0.28.10]\n  colour: red\n", `s.yaml:5: unknown field "colour"`},
		"unknown k8s":      {"name: x\ncni:\n  name: flannel\n  versions: [v0.28.10]\nkubernetes:\n  - v1.99.0\n", `s.yaml:6: unknown Kubernetes version "v1.99.0"`},
		"unknown cni ver":  {"name: x\ncni:\n  name: flannel\n  versions:\n    - v9.9.9\n", `s.yaml:5: unknown flannel version "v9.9.9"`},
		"unknown cni":      {"name: x\ncni:\n  name: weave\n  versions: [v1]\n", `s.yaml:3: unknown CNI "weave"`},
		"bad nodes":        {"name: x\ncni:\n  name: flannel\n  versions: [v0.28.10]\nnodes: two\n", `s.yaml:5: nodes "two"`},
		"bad timeout":      {"name: x\ncni:\n  name: flannel\n  versions: [v0.28.10]\ntimeouts:\n  checks: soon\n", `s.yaml:6: timeouts.checks "soon"`},
		"empty":            {"", "empty scenario file"},
		"wrong type":       {"name: x\ncni:\n  name: flannel\n  versions: [v0.28.10]\narch:\n  a: b\n", "s.yaml:6:"},
		"missing manifest": {"name: x\ncni:\n  name: flannel\n  versions: [v0.28.10]\n  manifest: nope.yaml\n", "s.yaml:5: cni.manifest nope.yaml"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := load(t, c.body)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
		})
	}
}

func TestKindRefusesForeignArch(t *testing.T) {
	foreign := "arm64"
	if HostArch() == "arm64" {
		foreign = "amd64"
	}
	_, err := load(t, "name: x\ncni:\n  name: flannel\n  versions: [v0.28.10]\nprovider: kind\narch: ["+foreign+"]\n")
	if err == nil || !strings.Contains(err.Error(), "qemu-user") {
		t.Fatalf("want refusal naming qemu-user, got %v", err)
	}
}
