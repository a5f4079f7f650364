package scenario

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cnimatrix/cnimatrix/internal/catalog"
	"github.com/cnimatrix/cnimatrix/internal/manifestcache"
)

// The shipped Calico scenario is valid except that, offline and with an
// empty cache, none of its versions can be resolved: loading it must say so
// per version, with the command that fixes it, and nothing else.
func TestCalicoScenarioOfflineSaysWhatIsMissing(t *testing.T) {
	cat, err := catalog.Load()
	if err != nil {
		t.Fatal(err)
	}
	ManifestCacheDir = t.TempDir()
	t.Cleanup(func() { ManifestCacheDir = "" })
	_, err = Load("../../scenarios/calico-arm64.yaml", cat, "/repo")
	errs, ok := err.(Errors)
	if !ok {
		t.Fatalf("want line errors, got %v", err)
	}
	// v3.17-v3.22 cannot run on either Kubernetes (policy/v1beta1 PDB):
	// skipped, they need no manifest.
	if len(errs) != 12 {
		t.Errorf("want one error per Calico version that can run (18 - 6), got %d:\n%v", len(errs), err)
	}
	if strings.Contains(err.Error(), "v3.17.6") || strings.Contains(err.Error(), "v3.22.5") {
		t.Errorf("a version skipped on every cell needs no manifest: %v", err)
	}
	for _, e := range errs {
		notPinned := strings.Contains(e.Msg, "not pinned") && strings.Contains(e.Msg, "catalog update --write")
		notCached := strings.Contains(e.Msg, "not in the manifest cache") && strings.Contains(e.Msg, "catalog fetch")
		if (!notPinned && !notCached) || e.Line == 0 {
			t.Errorf("unexpected error: %v", e)
		}
	}
	if !strings.Contains(err.Error(), "calico v3.32.1: manifest not") {
		t.Errorf("v3.32.1 not named: %v", err)
	}
}

// remoteCatalog is a catalog whose "calico" has one pinned version with one
// file and one with two (like v3.2: etcd.yaml + calico.yaml).
func remoteCatalog(a, b []byte) *catalog.Catalog {
	return &catalog.Catalog{
		Kubernetes: []catalog.KubernetesVersion{{Version: "v1.37.2", Default: true}},
		CNIs: []catalog.CNI{{Name: "calico", Namespace: "kube-system", Selector: "k8s-app=calico-node", Versions: []catalog.CNIVersion{
			{Version: "v3.99.1", Remote: []catalog.RemoteFile{{URL: "https://example.invalid/v3.99.1/calico.yaml", SHA256: manifestcache.Sum(a)}}},
			{Version: "v3.2.99", Remote: []catalog.RemoteFile{
				{URL: "https://example.invalid/v3.2.99/etcd.yaml", SHA256: manifestcache.Sum(b)},
				{URL: "https://example.invalid/v3.2.99/calico.yaml", SHA256: manifestcache.Sum(a)},
			}},
		}}},
	}
}

// seed puts data into the cache dir the way Fetch does, without a server.
func seed(t *testing.T, dir string, data []byte) {
	t.Helper()
	p := filepath.Join(dir, "sha256", manifestcache.Sum(data))
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRemoteManifestFromCache(t *testing.T) {
	a := []byte(calicoShaped)
	b := []byte("kind: Service\napiVersion: v1\nmetadata: {name: calico-etcd}")
	dir := t.TempDir()
	ManifestCacheDir = dir
	t.Cleanup(func() { ManifestCacheDir = "" })
	body := []byte("name: c\ncni:\n  name: calico\n  versions: [v3.99.1, v3.2.99]\nkubernetes: [v1.37.2]\narch: [amd64]\n")
	p := filepath.Join(t.TempDir(), "s.yaml")
	os.WriteFile(p, body, 0o644)

	// Pinned but not cached: the error says how to get it.
	_, err := Load(p, remoteCatalog(a, b), "/repo")
	if err == nil || !strings.Contains(err.Error(), "catalog fetch v3.99.1") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("not cached: %v", err)
	}

	seed(t, dir, a)
	seed(t, dir, b)
	s, err := Load(p, remoteCatalog(a, b), "/repo")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CNI.Manifests["v3.99.1"]; got != filepath.Join(dir, "sha256", manifestcache.Sum(a)) {
		t.Errorf("v3.99.1 manifest %s", got)
	}
	if s.CNI.Namespace != "kube-system" || s.CNI.Selector != "k8s-app=calico-node" {
		t.Errorf("namespace/selector %s %s", s.CNI.Namespace, s.CNI.Selector)
	}
	joined, err := os.ReadFile(s.CNI.Manifests["v3.2.99"])
	if err != nil {
		t.Fatal(err)
	}
	if want := "---\n" + string(b) + "\n---\n" + string(a); string(joined) != want {
		t.Errorf("joined manifest:\n%s\nwant:\n%s", joined, want)
	}

	// A cache entry that no longer matches its pin is refused.
	os.WriteFile(filepath.Join(dir, "sha256", manifestcache.Sum(a)), []byte("tampered"), 0o644)
	if _, err := Load(p, remoteCatalog(a, b), "/repo"); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("tampered cache: %v", err)
	}
}

func TestCalicoUnknownVersion(t *testing.T) {
	_, err := load(t, "name: c\ncni:\n  name: calico\n  versions: [v3.99.0]\n")
	if err == nil || !strings.Contains(err.Error(), `unknown calico version "v3.99.0"`) || !strings.Contains(err.Error(), "v3.32.1") {
		t.Errorf("unknown calico version: %v", err)
	}
}

func TestCalicoUpgradeToResolvesFromCache(t *testing.T) {
	a := []byte(calicoShaped)
	b := []byte("kind: Service\napiVersion: v1\nmetadata: {name: calico-etcd}\n")
	dir := t.TempDir()
	ManifestCacheDir = dir
	t.Cleanup(func() { ManifestCacheDir = "" })
	p := filepath.Join(t.TempDir(), "s.yaml")
	os.WriteFile(p, []byte("name: c\ncni:\n  name: calico\n  versions: [v3.2.99]\nkubernetes: [v1.37.2]\narch: [amd64]\nupgrade:\n  to: v3.99.1\n"), 0o644)
	seed(t, dir, b)
	_, err := Load(p, remoteCatalog(a, b), "/repo")
	if err == nil || !strings.Contains(err.Error(), "upgrade.to: calico v3.99.1: manifest not in the manifest cache") {
		t.Fatalf("uncached upgrade target: %v", err)
	}
	seed(t, dir, a)
	s, err := Load(p, remoteCatalog(a, b), "/repo")
	if err != nil {
		t.Fatal(err)
	}
	if s.Upgrade == nil || s.Upgrade.Manifest != filepath.Join(dir, "sha256", manifestcache.Sum(a)) {
		t.Errorf("upgrade manifest: %+v", s.Upgrade)
	}
}

// The seed-era Calico scenario loads offline with an empty manifest cache:
// no modern Kubernetes can run those versions, the catalog says why, and a
// version whose every cell is skipped needs no manifest.
func TestSeedCalicoScenarioLoadsOffline(t *testing.T) {
	cat, err := catalog.Load()
	if err != nil {
		t.Fatal(err)
	}
	ManifestCacheDir = t.TempDir()
	t.Cleanup(func() { ManifestCacheDir = "" })
	s, err := Load("../../scenarios/seed-2019-calico.yaml", cat, "/repo")
	if err != nil {
		t.Fatal(err)
	}
	cells := s.Cells()
	if len(cells) != 6 {
		t.Fatalf("%d cells, want 6", len(cells))
	}
	if len(s.CNI.Manifests) != 0 || len(s.ManifestPaths()) != 0 {
		t.Errorf("manifests resolved for cells that are all skipped: %v", s.CNI.Manifests)
	}
	for _, c := range cells {
		sk := s.SkipFor(c)
		if sk == nil {
			t.Errorf("%s: not skipped", c)
			continue
		}
		if !strings.HasPrefix(sk.Reason, "calico "+c.CNIVersion+" cannot run on Kubernetes v1.37.2: its manifest uses ") || len(sk.Removed) == 0 || len(sk.Images) < 4 {
			t.Errorf("%s: %+v", c, sk)
		}
		if want := s.ExpectFor(c); want.Outcome != "skipped" || len(want.Evidence) == 0 {
			t.Errorf("%s: expectation %+v", c, want)
		}
	}
	v31 := s.SkipFor(cells[0])
	if !strings.Contains(v31.Reason, "extensions/v1beta1 DaemonSet (removed in v1.16)") || !strings.HasSuffix(v31.Reason, "; tested on v1.8-v1.10") {
		t.Errorf("v3.1.7 reason: %s", v31.Reason)
	}
}

// A version that can run on one of the scenario's Kubernetes versions still
// needs its pinned, cached manifest; the cells it cannot run are skipped.
func TestSkipOnlyWhereTheKubernetesCannotRun(t *testing.T) {
	cat, err := catalog.Load()
	if err != nil {
		t.Fatal(err)
	}
	// v3.8.9's v1beta1 CRDs are still served by v1.21.
	cat.Kubernetes = append(cat.Kubernetes, catalog.KubernetesVersion{Version: "v1.21.14"})
	ManifestCacheDir = t.TempDir()
	t.Cleanup(func() { ManifestCacheDir = "" })
	body := []byte("name: c\ncni:\n  name: calico\n  versions: [v3.8.9, v3.32.1]\nkubernetes: [v1.21.14, v1.37.2]\narch: [amd64]\n")
	p := filepath.Join(t.TempDir(), "s.yaml")
	if err := os.WriteFile(p, body, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(p, cat, "/repo")
	errs, ok := err.(Errors)
	if !ok || len(errs) != 2 || errs[0].Line != 4 || !strings.Contains(errs[0].Msg, "calico v3.8.9: manifest not pinned") ||
		!strings.Contains(errs[1].Msg, "calico v3.32.1: manifest not in the manifest cache") {
		t.Fatalf("want v3.8.9 and v3.32.1 to need their manifests, got %v", err)
	}

	// With both versions' manifests pinned and cached, it loads; only
	// v3.8.9 on v1.37.2 is skipped.
	data := []byte(calicoShaped)
	seed(t, ManifestCacheDir, data)
	n, _ := cat.CNI("calico")
	for _, ver := range []string{"v3.8.9", "v3.32.1"} {
		cv, _ := n.Version(ver)
		cv.Remote = []catalog.RemoteFile{{URL: "https://example.invalid/" + ver + "/calico.yaml", SHA256: manifestcache.Sum(data)}}
	}
	s, err := Load(p, cat, "/repo")
	if err != nil {
		t.Fatal(err)
	}
	var skipped []string
	for _, c := range s.Cells() {
		if sk := s.SkipFor(c); sk != nil {
			skipped = append(skipped, c.CNIVersion+"@"+c.Kubernetes+": "+sk.Reason)
		}
	}
	want := "v3.8.9@v1.37.2: calico v3.8.9 cannot run on Kubernetes v1.37.2: its manifest uses apiextensions.k8s.io/v1beta1 CustomResourceDefinition (removed in v1.22); tested on v1.13-v1.15"
	if len(skipped) != 1 || skipped[0] != want {
		t.Errorf("skipped cells:\n%s\nwant\n%s", strings.Join(skipped, "\n"), want)
	}
	if s.CNI.Manifests["v3.8.9"] == "" {
		t.Error("v3.8.9 runs on v1.21.14 but has no manifest")
	}
}

// A file the catalog does not pin loads once the user's lock trusts it, and
// the scenario records that provenance; the catalog's own pins stay
// "pinned".
func TestTrustedOnFirstUseLoads(t *testing.T) {
	data := []byte(calicoShaped)
	cat := remoteCatalog(data, data)
	n, _ := cat.CNI("calico")
	cv, _ := n.Version("v3.99.1")
	url := cv.Remote[0].URL
	cv.Remote[0].SHA256 = ""
	ManifestCacheDir = t.TempDir()
	LockPath = filepath.Join(t.TempDir(), "pins.lock")
	t.Cleanup(func() { ManifestCacheDir, LockPath = "", "" })
	seed(t, ManifestCacheDir, data)
	body := []byte("name: c\ncni:\n  name: calico\n  versions: [v3.99.1, v3.2.99]\nkubernetes: [v1.37.2]\narch: [amd64]\n")
	p := filepath.Join(t.TempDir(), "s.yaml")
	if err := os.WriteFile(p, body, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p, cat, "/repo"); err == nil || !strings.Contains(err.Error(), "catalog update --lock v3.99.1") {
		t.Fatalf("unpinned, no lock: %v", err)
	}
	lock := &catalog.Lock{Path: LockPath, Pins: map[string]string{url: manifestcache.Sum(data)}}
	if err := lock.Write(); err != nil {
		t.Fatal(err)
	}
	s, err := Load(p, cat, "/repo")
	if err != nil {
		t.Fatal(err)
	}
	if s.CNI.Pins["v3.99.1"] != catalog.PinTrustedOnFirstUse || s.CNI.Pins["v3.2.99"] != catalog.PinCatalog {
		t.Errorf("pins %v", s.CNI.Pins)
	}
	// The lock's sum guards the cached bytes as a catalog pin does.
	lock.Pins[url] = strings.Repeat("1", 64)
	lock.Write()
	if _, err := Load(p, cat, "/repo"); err == nil || !strings.Contains(err.Error(), "not in the manifest cache") {
		t.Errorf("a lock sum no cached file has: %v", err)
	}
}

// calicoShaped is the least a calico.yaml holds for the harness's edits: a
// calico-node DaemonSet whose container takes the pool's CIDR.
const calicoShaped = `kind: DaemonSet
apiVersion: apps/v1
metadata: {name: calico-node, namespace: kube-system}
spec:
  template:
    spec:
      containers:
        - name: calico-node
          image: calico/node:v3.99.1
`
