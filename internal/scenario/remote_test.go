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
	if len(errs) != 18 {
		t.Errorf("want one error per Calico version (18), got %d:\n%v", len(errs), err)
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
	a := []byte("kind: ConfigMap\napiVersion: v1\nmetadata: {name: calico-config}\n")
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
	a := []byte("kind: ConfigMap\napiVersion: v1\nmetadata: {name: calico-config}\n")
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
