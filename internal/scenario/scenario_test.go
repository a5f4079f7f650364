package scenario

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/cnimatrix/cnimatrix/internal/catalog"
	"github.com/cnimatrix/cnimatrix/internal/images"
	"github.com/cnimatrix/cnimatrix/internal/install"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/repo"
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
		"malformed":         {"name: x\ncni: [\n", "s.yaml:"},
		"unknown field":     {"name: x\ncni:\n  name: flannel\n  versions: [v0.28.10]\n  colour: red\n", `s.yaml:5: unknown field "colour"`},
		"unknown k8s":       {"name: x\ncni:\n  name: flannel\n  versions: [v0.28.10]\nkubernetes:\n  - v1.99.0\n", `s.yaml:6: unknown Kubernetes version "v1.99.0"`},
		"unknown cni ver":   {"name: x\ncni:\n  name: flannel\n  versions:\n    - v9.9.9\n", `s.yaml:5: unknown flannel version "v9.9.9"`},
		"unknown cni":       {"name: x\ncni:\n  name: weave\n  versions: [v1]\n", `s.yaml:3: unknown CNI "weave"`},
		"bad nodes":         {"name: x\ncni:\n  name: flannel\n  versions: [v0.28.10]\nnodes: two\n", `s.yaml:5: nodes "two"`},
		"bad timeout":       {"name: x\ncni:\n  name: flannel\n  versions: [v0.28.10]\ntimeouts:\n  checks: soon\n", `s.yaml:6: timeouts.checks "soon"`},
		"empty":             {"", "empty scenario file"},
		"wrong type":        {"name: x\ncni:\n  name: flannel\n  versions: [v0.28.10]\narch:\n  a: b\n", "s.yaml:6:"},
		"missing manifest":  {"name: x\ncni:\n  name: flannel\n  versions: [v0.28.10]\n  manifest: nope.yaml\n", "s.yaml:5: cni.manifest nope.yaml"},
		"manifest is a dir": {"name: x\ncni:\n  name: flannel\n  versions: [v0.28.10]\n  manifest: .\n", "s.yaml:5: cni.manifest .: is a directory"},
		"subnet octets":     {"name: x\ncni:\n  name: flannel\n  versions: [v0.28.10]\npodSubnet: 300.1.1.1/99\n", `s.yaml:5: podSubnet "300.1.1.1/99": want an IPv4 CIDR`},
		"subnet host bits":  {"name: x\ncni:\n  name: flannel\n  versions: [v0.28.10]\nserviceSubnet: 10.96.0.1/16\n", `s.yaml:5: serviceSubnet "10.96.0.1/16": host bits are set; the network is 10.96.0.0/16`},
		"subnets overlap":   {"name: x\ncni:\n  name: flannel\n  versions: [v0.28.10]\npodSubnet: 10.0.0.0/8\nserviceSubnet: 10.96.0.0/16\n", "s.yaml:6: serviceSubnet 10.96.0.0/16 overlaps podSubnet 10.0.0.0/8"},
		"subnet ipv6":       {"name: x\ncni:\n  name: flannel\n  versions: [v0.28.10]\npodSubnet: fd00::/64\n", `s.yaml:5: podSubnet "fd00::/64": want an IPv4 CIDR`},
	}
	// One mistake, one error: a missing manifest is not also reported by
	// the Calico edits that could not read it.
	if _, err := load(t, "name: x\ncni:\n  name: calico\n  versions: [v3.32.1]\n  manifest: nope.yaml\n  calico: {encapsulation: VXLAN}\n"); err == nil || strings.Count(err.Error(), "s.yaml:") != 1 {
		t.Errorf("missing Calico manifest: %v, want exactly one error", err)
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

func TestPerVersionManifestsAndCellExpects(t *testing.T) {
	cat, err := catalog.Load()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, f := range []string{"a.yaml", "b.yaml"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("kind: List\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	body := `
name: fx
cni:
  name: flannel
  versions: [fixture-a, fixture-b, v0.28.10]
  manifests:
    fixture-a: a.yaml
    fixture-b: ` + filepath.Join(dir, "b.yaml") + `
arch: [amd64, arm64]
provider: auto
expect:
  evidence: just one
  cells:
  - match: {version: fixture-b, arch: arm64}
    outcome: fail
    rootCause: exec-format
    evidence: [exec format error, /bin/x]
  - match: {arch: arm64}
    rootCause: ignored-for-pass
`
	p := filepath.Join(dir, "s.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Load(p, cat, "/repo")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"fixture-a": filepath.Join(dir, "a.yaml"),
		"fixture-b": filepath.Join(dir, "b.yaml"),
		"v0.28.10":  "/repo/fixtures/cni/flannel/kube-flannel.yaml",
	}
	for v, m := range want {
		if s.CNI.Manifests[v] != m {
			t.Errorf("manifest of %s: %q, want %q", v, s.CNI.Manifests[v], m)
		}
	}
	if len(s.Cells()) != 6 {
		t.Fatalf("%d cells, want 6", len(s.Cells()))
	}
	if e := s.Expect; e.Outcome != matrix.Pass || len(e.Evidence) != 1 || e.Evidence[0] != "just one" {
		t.Errorf("default expectation %+v", e)
	}
	for _, c := range s.Cells() {
		e := s.ExpectFor(c)
		switch {
		case c.CNIVersion == "fixture-b" && c.Arch == "arm64":
			if e.Outcome != matrix.Fail || e.RootCause != "exec-format" || strings.Join(e.Evidence, "|") != "exec format error|/bin/x" {
				t.Errorf("%s: %+v", c.ID(), e)
			}
		case c.Arch == "arm64":
			// The second rule: its outcome defaults to expect's.
			if e.Outcome != matrix.Pass || e.RootCause != "ignored-for-pass" {
				t.Errorf("%s: %+v", c.ID(), e)
			}
		default:
			if e.Outcome != matrix.Pass || e.RootCause != "" {
				t.Errorf("%s: %+v", c.ID(), e)
			}
		}
	}
}

func TestBadManifestsAndCellExpects(t *testing.T) {
	dir := t.TempDir()
	m := filepath.Join(dir, "m.yaml")
	if err := os.WriteFile(m, []byte("kind: List\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	head := "name: x\ncni:\n  name: flannel\n  versions: [fx]\n  manifests:\n    fx: " + m + "\n"
	cases := map[string]struct{ body, want string }{
		"manifest of no version": {"name: x\ncni:\n  name: flannel\n  versions: [v0.28.10]\n  manifests:\n    other: " + m + "\n",
			`s.yaml:6: cni.manifests: "other" is not one of cni.versions`},
		"missing manifest file": {"name: x\ncni:\n  name: flannel\n  versions: [fx]\n  manifests:\n    fx: nope.yaml\n",
			`s.yaml:6: cni.manifests: fx: "nope.yaml" is not a readable file`},
		"fixture without manifest": {"name: x\ncni:\n  name: flannel\n  versions: [fx]\n", `unknown flannel version "fx"`},
		"unknown match key":        {head + "expect:\n  cells:\n  - match: {colour: red}\n", `s.yaml:9: expect.cells[0].match: unknown key "colour"`},
		"match of no cell":         {head + "expect:\n  cells:\n  - match: {version: v1}\n", `s.yaml:9: expect.cells[0].match: version "v1" is not one of the scenario's (fx)`},
		"rule without match":       {head + "expect:\n  cells:\n  - outcome: fail\n", `expect.cells[0]: match is required`},
		"bad rule outcome":         {head + "expect:\n  cells:\n  - match: {version: fx}\n    outcome: broken\n", `s.yaml:10: expect.cells[0].outcome "broken"`},
		"empty evidence":           {head + "expect:\n  evidence: ['']\n", `s.yaml:8: expect.evidence: empty string`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := load(t, c.body)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}

// The seed scenario loads, expects what issue 4 says, and its three
// manifests are the offline flannel plus the flexvol init container: if the
// flannel manifest changes, they must follow.
func TestSeedScenario(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.Load()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Load(filepath.Join(root, "scenarios", "seed-2019.yaml"), cat, root)
	if err != nil {
		t.Fatal(err)
	}
	cells := s.Cells()
	if len(cells) != 6 {
		t.Fatalf("%d cells, want 6", len(cells))
	}
	fixture := map[string]string{"good": images.FlexvolGood, "amd64-only": images.FlexvolAmd64Only, "mislabeled": images.FlexvolMislabeled}
	for _, c := range cells {
		e := s.ExpectFor(c)
		var want Expectation
		switch {
		case c.Arch == "amd64" || c.CNIVersion == "good":
			want = Expectation{Outcome: matrix.Pass}
		case c.CNIVersion == "amd64-only":
			want = Expectation{Outcome: matrix.Fail, RootCause: "arch-mismatch"}
		default:
			want = Expectation{Outcome: matrix.Fail, RootCause: "exec-format"}
		}
		if e.Outcome != want.Outcome || e.RootCause != want.RootCause {
			t.Errorf("%s: expects %s %s, want %s %s", c.ID(), e.Outcome, e.RootCause, want.Outcome, want.RootCause)
		}
		if e.Outcome == matrix.Fail {
			for _, must := range []string{"flexvol-driver", fixture[c.CNIVersion], images.FlexvolEntrypoint} {
				if !slices.Contains(e.Evidence, must) {
					t.Errorf("%s: expected evidence does not name %q: %q", c.ID(), must, e.Evidence)
				}
			}
		}
	}

	flannel := readObjects(t, filepath.Join(root, "fixtures/cni/flannel/kube-flannel.yaml"))
	for version, ref := range fixture {
		objs := readObjects(t, s.CNI.Manifests[version])
		if len(objs) != len(flannel) {
			t.Fatalf("%s: %d objects, flannel has %d", version, len(objs), len(flannel))
		}
		for i, o := range objs {
			if o.GetKind() == "DaemonSet" {
				spec := o.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
				inits, _ := spec["initContainers"].([]any)
				if len(inits) != 1 {
					t.Fatalf("%s: %d init containers, want 1", version, len(inits))
				}
				ic := inits[0].(map[string]any)
				if ic["name"] != "flexvol-driver" || ic["image"] != ref {
					t.Errorf("%s: init container %v %v, want flexvol-driver %s", version, ic["name"], ic["image"], ref)
				}
				delete(spec, "initContainers")
				vols := spec["volumes"].([]any)
				last := vols[len(vols)-1].(map[string]any)
				if last["name"] != "flexvol-driver-host" {
					t.Fatalf("%s: last volume %v, want flexvol-driver-host", version, last["name"])
				}
				spec["volumes"] = vols[:len(vols)-1]
			}
			if !reflect.DeepEqual(o.Object, flannel[i].Object) {
				t.Errorf("%s: %s %s differs from the flannel manifest's beyond the flexvol init container", version, o.GetKind(), o.GetName())
			}
		}
	}
}

func readObjects(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := install.ParseManifest(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return objs
}

func TestUpgradeAndSoak(t *testing.T) {
	s, err := load(t, `
name: up
cni:
  name: flannel
  versions: [v0.28.10]
upgrade:
  to: v0.28.10-rebuild
  probeInterval: 250ms
  maxFailedProbes: 2
soak:
  duration: 10m
  interval: 5s
  minAvailability: 99.9%
arch: amd64
`)
	if err != nil {
		t.Fatal(err)
	}
	if s.Upgrade == nil || s.Upgrade.To != "v0.28.10-rebuild" || s.Upgrade.ProbeInterval.String() != "250ms" || s.Upgrade.MaxFailedProbes != 2 ||
		s.Upgrade.Manifest != "/repo/fixtures/cni/flannel/kube-flannel-rebuild.yaml" {
		t.Errorf("upgrade = %+v", s.Upgrade)
	}
	if s.Soak.Duration.String() != "10m0s" || s.Soak.Interval.String() != "5s" || s.Soak.MinAvailability != 99.9 {
		t.Errorf("soak = %+v", s.Soak)
	}
	cells := s.Cells()
	if len(cells) != 1 || cells[0].UpgradeTo != "v0.28.10-rebuild" || !strings.HasSuffix(cells[0].ID(), "_to-v0.28.10-rebuild") {
		t.Errorf("cells = %+v", cells)
	}
	if got := s.ManifestPaths(); len(got) != 2 || got[1] != s.Upgrade.Manifest {
		t.Errorf("ManifestPaths = %v", got)
	}

	// Defaults: probe every second, no failed request allowed.
	s, err = load(t, "name: up\ncni: {name: flannel, versions: [v0.28.10]}\nupgrade: {to: v0.28.10-rebuild}\narch: amd64\n")
	if err != nil {
		t.Fatal(err)
	}
	if s.Upgrade.ProbeInterval.String() != "1s" || s.Upgrade.MaxFailedProbes != 0 || s.Soak.Duration != 0 {
		t.Errorf("defaults: upgrade %+v soak %+v", s.Upgrade, s.Soak)
	}
}

func TestBadUpgradeAndSoak(t *testing.T) {
	for _, c := range []struct{ body, want string }{
		{"upgrade: {to: v9.9.9}", `s.yaml:5: upgrade.to: unknown flannel version "v9.9.9"`},
		{"upgrade: {to: v0.28.10}", `upgrade.to "v0.28.10" is also one of cni.versions`},
		{"upgrade: {probeInterval: 1s}", "upgrade.to is required"},
		{"upgrade: {to: v0.28.10-rebuild, probeInterval: 5ms}", `upgrade.probeInterval "5ms": want a duration from 100ms to 1m`},
		{"upgrade: {to: v0.28.10-rebuild, maxFailedProbes: -1}", `upgrade.maxFailedProbes "-1"`},
		{"upgrade: {to: v0.28.10-rebuild, probes: 1}", `unknown field "probes"`},
		{"soak: {interval: 1s}", "soak.duration is required"},
		{"soak: {duration: 10s, interval: 10s}", "soak.interval 10s must be shorter than soak.duration 10s"},
		{"soak: {duration: 1x}", `soak.duration "1x"`},
		{"soak: {duration: 1m, minAvailability: 101}", `soak.minAvailability "101": want a percentage from 0 to 100`},
		{"reuseClusters: yes", `s.yaml:5: reuseClusters "yes": want true or false`},
	} {
		_, err := load(t, "name: bad\ncni:\n  name: flannel\n  versions: [v0.28.10]\n"+c.body+"\narch: amd64\n")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s:\n got %v\nwant %q", c.body, err, c.want)
		}
	}
}

func TestReuseClusters(t *testing.T) {
	for body, want := range map[string]bool{"": false, "reuseClusters: false\n": false, "reuseClusters: true\n": true} {
		s, err := load(t, "name: r\ncni: {name: flannel, versions: [v0.28.10]}\n"+body+"arch: amd64\n")
		if err != nil {
			t.Fatal(err)
		}
		if s.ReuseClusters != want {
			t.Errorf("%q: ReuseClusters %v, want %v", body, s.ReuseClusters, want)
		}
	}
}

// TestRebuildManifestMatchesFlannel keeps the upgrade's TO manifest the
// offline CNI's own, but for the image: an upgrade-path cell upgrades the
// CNI's build, nothing else.
func TestRebuildManifestMatchesFlannel(t *testing.T) {
	root, err := repo.Root()
	if err != nil {
		t.Fatal(err)
	}
	read := func(name string) []*unstructured.Unstructured {
		data, err := os.ReadFile(filepath.Join(root, "fixtures/cni/flannel", name))
		if err != nil {
			t.Fatal(err)
		}
		objs, err := install.ParseManifest(data)
		if err != nil {
			t.Fatal(err)
		}
		return objs
	}
	from, to := read("kube-flannel.yaml"), read("kube-flannel-rebuild.yaml")
	if len(from) != len(to) {
		t.Fatalf("%d objects, rebuild has %d", len(from), len(to))
	}
	swapped := 0
	for i := range from {
		a, b := from[i].DeepCopy(), to[i].DeepCopy()
		if a.GetKind() == "DaemonSet" {
			cs, _, _ := unstructured.NestedSlice(b.Object, "spec", "template", "spec", "containers")
			for _, c := range cs {
				m := c.(map[string]any)
				if m["image"] == images.FlannelRebuildRef {
					m["image"] = images.FlannelImageRef
					swapped++
				}
			}
			_ = unstructured.SetNestedSlice(b.Object, cs, "spec", "template", "spec", "containers")
		}
		if !reflect.DeepEqual(a.Object, b.Object) {
			t.Errorf("object %d (%s %s) differs beyond the image", i, a.GetKind(), a.GetName())
		}
	}
	if swapped != 1 {
		t.Errorf("rebuild manifest runs %s in %d containers, want 1", images.FlannelRebuildRef, swapped)
	}
}

func TestCalicoOptionsTriedOnTheManifests(t *testing.T) {
	root, err := repo.Root()
	if err != nil {
		t.Fatal(err)
	}
	fixtures := filepath.Join(root, "internal/calico/testdata")
	body := func(opts string) string {
		return "name: c\ncni:\n  name: calico\n  versions: [old, new]\n  manifests:\n    old: " + fixtures + "/calico-v3.2-shaped.yaml\n    new: " + fixtures + "/calico-v3.28-shaped.yaml\n" + opts + "arch: amd64\npodSubnet: 10.244.0.0/16\n"
	}
	s, err := load(t, body("  calico: {encapsulation: IPIP, registry: quay.io}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c := s.CNI.Calico; c == nil || c.Encapsulation != "IPIP" || c.PodCIDR != "10.244.0.0/16" || c.Registry != "quay.io" {
		t.Errorf("calico options = %+v", s.CNI.Calico)
	}
	for _, c := range []struct{ opts, want string }{
		{"  calico: {encapsulation: VXLAN}\n", "s.yaml:8: cni.calico: " + fixtures + "/calico-v3.2-shaped.yaml: "},
		{"  calico: {encapsulation: GRE}\n", `s.yaml:8: cni.calico.encapsulation "GRE": want one of IPIP, VXLAN, VXLANCrossSubnet, None`},
		{"  calico: {mtu: big}\n", `s.yaml:8: cni.calico.mtu "big": want 0 (auto) or a number from 576 to 9000`},
		{"  calico:\n    encapsulation: IPIP\n    mtu: 99999\n", `s.yaml:10: cni.calico.mtu "99999"`},
		{"  calico:\n    encapsulation: IPIP\n    registry: myregistry\n", `s.yaml:10: cni.calico.registry "myregistry": "myregistry" is not a host name (no dot, no port), so a container runtime would pull docker.io/myregistry/calico/...`},
		{"  calico:\n    encapsulation: IPIP\n    registry: mirror.local:5000/calico\n", `s.yaml:10: cni.calico.registry "mirror.local:5000/calico" ends in "calico"`},
		{"  calico:\n    encapsulation: IPIP\n    imagePath: Mirror/Calico\n", `s.yaml:10: cni.calico.imagePath "Mirror/Calico": want a repository path`},
		{"  calico:\n    registry: quay.io\n    encapsulation: VXLAN\n", "s.yaml:10: cni.calico: " + fixtures + "/calico-v3.2-shaped.yaml: "},
		{"  calico:\n    install: operator\n    registry: quay.io\n", "s.yaml:9: cni.calico: " + fixtures + "/calico-v3.2-shaped.yaml: "},
	} {
		if _, err := load(t, body(c.opts)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.opts, err, c.want)
		}
	}
	s, err = load(t, body("  calico: {registry: mirror.local:5000, imagePath: mirror/calico}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c := s.CNI.Calico; c.Registry != "mirror.local:5000" || c.ImagePath != "mirror/calico" {
		t.Errorf("registry, imagePath = %q, %q", c.Registry, c.ImagePath)
	}
	// Without a cni.calico block the pool still gets the cluster's podSubnet.
	s, err = load(t, body(""))
	if err != nil {
		t.Fatal(err)
	}
	if c := s.CNI.Calico; c == nil || c.PodCIDR != "10.244.0.0/16" {
		t.Errorf("no cni.calico block: options %+v, want the pool CIDR 10.244.0.0/16", c)
	}
	if _, err := load(t, "name: f\ncni:\n  name: flannel\n  versions: [v0.28.10]\n  calico: {encapsulation: VXLAN}\narch: amd64\n"); err == nil || !strings.Contains(err.Error(), `only for cni.name calico, not "flannel"`) {
		t.Errorf("flannel with cni.calico: %v", err)
	}
}

func TestCalicoOperatorInstall(t *testing.T) {
	root, err := repo.Root()
	if err != nil {
		t.Fatal(err)
	}
	fixtures := filepath.Join(root, "internal/calico/testdata")
	body := func(file, opts string) string {
		return "name: c\ncni:\n  name: calico\n  versions: [op]\n  manifests:\n    op: " + fixtures + "/" + file + "\n" + opts + "arch: amd64\npodSubnet: 10.244.0.0/16\n"
	}
	s, err := load(t, body("tigera-operator-v3.28-shaped.yaml", "  calico: {install: operator, encapsulation: VXLAN}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c := s.CNI.Calico; c == nil || c.Install != "operator" || c.Encapsulation != "VXLAN" {
		t.Errorf("calico options = %+v", s.CNI.Calico)
	}
	if s.CNI.Namespace != "calico-system" {
		t.Errorf("an operator install's Calico is in %q, want calico-system", s.CNI.Namespace)
	}
	for _, c := range []struct{ file, opts, want string }{
		{"tigera-operator-v3.28-shaped.yaml", "  calico: {install: helm}\n", `s.yaml:7: cni.calico.install "helm": want manifest or operator`},
		{"tigera-operator-v3.28-shaped.yaml", "  calico: {encapsulation: VXLAN}\n", "set cni.calico.install: operator"},
		{"calico-v3.28-shaped.yaml", "  calico: {install: operator}\n", "no tigera-operator Deployment"},
	} {
		if _, err := load(t, body(c.file, c.opts)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %s: got %v, want %q", c.file, c.opts, err, c.want)
		}
	}
	// A catalog version resolves to its operator files; not cached, the
	// error names them.
	ManifestCacheDir = t.TempDir()
	t.Cleanup(func() { ManifestCacheDir = "" })
	if _, err := load(t, "name: c\ncni:\n  name: calico\n  versions: [v3.28.5]\n  calico: {install: operator}\nkubernetes: [v1.37.2]\narch: amd64\n"); err == nil || !strings.Contains(err.Error(), "tigera-operator.yaml") {
		t.Errorf("catalog operator install: %v", err)
	}
}
