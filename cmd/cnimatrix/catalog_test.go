package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cnimatrix/cnimatrix/internal/catalog"
	"github.com/cnimatrix/cnimatrix/internal/manifestcache"
)

func runCatalog(t *testing.T, args ...string) (int, string, error) {
	t.Helper()
	root := newRoot()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(append([]string{"catalog"}, args...))
	err := root.ExecuteContext(context.Background())
	return exitCode(err), out.String(), err
}

func TestCatalogListsCalico(t *testing.T) {
	code, out, err := runCatalog(t)
	if code != 0 {
		t.Fatalf("exit %d: %v", code, err)
	}
	for _, want := range []string{
		"VERSION", "v3.32.1", "v1.34-v1.36", "v3.15.5", "v3.1.7",
		"projectcalico/calico#5963", "(fixed in v3.27.3)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("catalog output lacks %q:\n%s", want, out)
		}
	}
	// Pinned: every file of v3.24.6..v3.32.1; older releases none yet.
	for _, want := range []string{"v3.24.6 3/3", "v3.29.7 3/3", "v3.30.7 4/4", "v3.32.1 4/4", "v3.23.5 0/3", "v3.1.7 0/1"} {
		ver, pinned, _ := strings.Cut(want, " ")
		found := false
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 2 && f[0] == ver {
				found = true
				if f[2] != pinned {
					t.Errorf("%s: pinned %s, want %s", ver, f[2], pinned)
				}
			}
		}
		if !found {
			t.Errorf("no line for %s:\n%s", ver, out)
		}
	}
}

// fakeUpstream serves a small Calico-shaped manifest at /v3.99.1/calico.yaml
// and 404 for everything else, over TLS (the catalog takes https only).
func fakeUpstream(t *testing.T) (*httptest.Server, []byte) {
	t.Helper()
	manifest, err := os.ReadFile("../../internal/calico/testdata/calico-v3.28-shaped.yaml")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v3.99.1/calico.yaml" {
			w.Write(manifest)
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	old := catalogHTTPClient
	catalogHTTPClient = srv.Client()
	t.Cleanup(func() { catalogHTTPClient = old })
	return srv, manifest
}

func writeCatalog(t *testing.T, base, pin string, withMissing bool) string {
	t.Helper()
	body := `# a test catalog; this comment must survive --write
versions:
  - version: v3.99.1
    kubernetes: [v1.36]
    manifests:
      - url: ` + base + `/v3.99.1/calico.yaml
        sha256: "` + pin + `"
    images:
      - docker.io/calico/cni:v3.28.5
      - docker.io/calico/node:v3.28.5
      - docker.io/calico/kube-controllers:v3.28.5
    arm64: multi-arch
`
	if withMissing {
		body += `  - version: v3.99.2
    kubernetes: [v1.36]
    manifests:
      - url: ` + base + `/v3.99.2/calico.yaml
        sha256: ""
    images: [docker.io/calico/node:v3.99.2]
    arm64: multi-arch
`
	}
	p := filepath.Join(t.TempDir(), "calico.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCatalogUpdateShowsAndWritesPins(t *testing.T) {
	srv, manifest := fakeUpstream(t)
	sum := manifestcache.Sum(manifest)
	file := writeCatalog(t, srv.URL, "", false)
	before, _ := os.ReadFile(file)
	cache := t.TempDir()

	code, out, err := runCatalog(t, "update", "--file", file, "--cache", cache)
	if code != 0 {
		t.Fatalf("exit %d: %v\n%s", code, err, out)
	}
	if !strings.Contains(out, "v3.99.1 calico.yaml: new pin "+sum) || !strings.Contains(out, "rerun with --write") {
		t.Errorf("update output:\n%s", out)
	}
	if strings.Contains(out, "images differ") {
		t.Errorf("images agree with the catalog, yet:\n%s", out)
	}
	if after, _ := os.ReadFile(file); !bytes.Equal(before, after) {
		t.Error("update without --write changed the file")
	}

	code, out, err = runCatalog(t, "update", "--file", file, "--cache", cache, "--write")
	if code != 0 {
		t.Fatalf("--write: exit %d: %v\n%s", code, err, out)
	}
	after, _ := os.ReadFile(file)
	c, err := catalog.ParseCalico(after)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Versions[0].Manifests[0].SHA256; got != sum {
		t.Errorf("written pin %q, want %s", got, sum)
	}
	if !strings.HasPrefix(string(after), "# a test catalog; this comment must survive --write") {
		t.Error("--write lost the file's comments")
	}

	// Now pinned and unchanged; then upstream "changes" and update says so.
	_, out, _ = runCatalog(t, "update", "--file", file, "--cache", cache)
	if !strings.Contains(out, "unchanged "+sum) || !strings.Contains(out, "no pin to change") {
		t.Errorf("second update:\n%s", out)
	}
	stale := strings.Repeat("0", 64)
	file = writeCatalog(t, srv.URL, stale, false)
	_, out, _ = runCatalog(t, "update", "--file", file, "--cache", cache)
	if !strings.Contains(out, "CHANGED upstream: pinned "+stale+", now "+sum) {
		t.Errorf("changed upstream file:\n%s", out)
	}
}

func TestCatalogUpdateReportsImageDrift(t *testing.T) {
	srv, _ := fakeUpstream(t)
	body, _ := os.ReadFile(writeCatalog(t, srv.URL, "", false))
	body = bytes.Replace(body, []byte("docker.io/calico/kube-controllers:v3.28.5"), []byte("docker.io/calico/typha:v3.28.5"), 1)
	file := filepath.Join(t.TempDir(), "calico.yaml")
	os.WriteFile(file, body, 0o644)
	_, out, _ := runCatalog(t, "update", "--file", file, "--cache", t.TempDir())
	if !strings.Contains(out, "manifest also uses docker.io/calico/kube-controllers:v3.28.5") || !strings.Contains(out, "manifest does not use docker.io/calico/typha:v3.28.5") {
		t.Errorf("image drift not reported:\n%s", out)
	}
}

func TestCatalogUpdateFailsPerURL(t *testing.T) {
	srv, _ := fakeUpstream(t)
	file := writeCatalog(t, srv.URL, "", true)
	code, out, err := runCatalog(t, "update", "--file", file, "--cache", t.TempDir())
	if code == 0 || err == nil {
		t.Fatalf("a 404 must fail the update: %s", out)
	}
	missing := srv.URL + "/v3.99.2/calico.yaml"
	if !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "404") {
		t.Errorf("error should name the URL and status: %v", err)
	}
	if !strings.Contains(out, "v3.99.1 calico.yaml: new pin") {
		t.Errorf("the reachable file should still be reported:\n%s", out)
	}

	// Offline: every URL fails, each named.
	srv.Close()
	_, _, err = runCatalog(t, "update", "--file", file, "--cache", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), srv.URL+"/v3.99.1/calico.yaml") || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "needs the internet") {
		t.Errorf("offline update: %v", err)
	}
}

func TestCatalogFetchChecksPins(t *testing.T) {
	srv, manifest := fakeUpstream(t)
	sum := manifestcache.Sum(manifest)
	cache := t.TempDir()
	good := writeCatalog(t, srv.URL, sum, false)
	code, out, err := runCatalog(t, "fetch", "--file", good, "--cache", cache)
	if code != 0 || !strings.Contains(out, "downloaded") {
		t.Fatalf("fetch: exit %d %v\n%s", code, err, out)
	}
	srv.Close()
	code, out, err = runCatalog(t, "fetch", "--file", good, "--cache", cache)
	if code != 0 || !strings.Contains(out, "cached") {
		t.Errorf("offline fetch of a cached pinned file: exit %d %v\n%s", code, err, out)
	}

	srv2, _ := fakeUpstream(t)
	bad := writeCatalog(t, srv2.URL, strings.Repeat("1", 64), false)
	_, _, err = runCatalog(t, "fetch", "--file", bad, "--cache", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "sha256 mismatch") || !strings.Contains(err.Error(), sum) {
		t.Errorf("mismatch: %v", err)
	}
}

func TestCatalogBadInput(t *testing.T) {
	if code, _, err := runCatalog(t, "update", "v3.99.9", "--cache", t.TempDir()); code != exitBadInput || err == nil || !strings.Contains(err.Error(), "known: v3.1.7") {
		t.Errorf("unknown version: exit %d %v", code, err)
	}
	bad := filepath.Join(t.TempDir(), "calico.yaml")
	os.WriteFile(bad, []byte("versions:\n  - version: v3.1\n    sha: x\n"), 0o644)
	if code, _, err := runCatalog(t, "--file", bad); code != exitBadInput || err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("bad catalog file: exit %d %v", code, err)
	}
}

// update scans the downloaded manifests for removed Kubernetes APIs and
// reports where they differ from the catalog's removedAPIs, the data runs
// skip cells by.
func TestCatalogUpdateChecksRemovedAPIs(t *testing.T) {
	manifest, err := os.ReadFile("../../internal/calico/testdata/calico-v3.2-shaped.yaml")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(manifest) }))
	t.Cleanup(srv.Close)
	old := catalogHTTPClient
	catalogHTTPClient = srv.Client()
	t.Cleanup(func() { catalogHTTPClient = old })
	entry := func(version, removed string) string {
		return `  - version: ` + version + `
    kubernetes: [v1.10]
    manifests:
      - url: ` + srv.URL + `/` + version + `/calico.yaml
        sha256: ""
    images: [quay.io/calico/node:v3.2.8, quay.io/calico/cni:v3.2.8, quay.io/calico/kube-controllers:v3.2.8]
    arm64: arch-suffixed tags
    removedAPIs: ` + removed + `
`
	}
	file := filepath.Join(t.TempDir(), "calico.yaml")
	body := "versions:\n" +
		entry("v3.2.97", "[{apiVersion: extensions/v1beta1, kind: DaemonSet}, {apiVersion: extensions/v1beta1, kind: Deployment}]") +
		entry("v3.2.98", "[{apiVersion: extensions/v1beta1, kind: DaemonSet}, {apiVersion: apiextensions.k8s.io/v1beta1, kind: CustomResourceDefinition}]")
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, err := runCatalog(t, "update", "--file", file, "--cache", t.TempDir())
	if code != 0 {
		t.Fatalf("exit %d: %v\n%s", code, err, out)
	}
	if strings.Contains(out, "v3.2.97: removed") {
		t.Errorf("v3.2.97 declares what its manifest uses, yet:\n%s", out)
	}
	want := "v3.2.98: removed Kubernetes APIs differ from the catalog's removedAPIs: manifest also uses extensions/v1beta1 Deployment (removed in v1.16); " +
		"manifest does not use apiextensions.k8s.io/v1beta1 CustomResourceDefinition"
	if !strings.Contains(out, want) {
		t.Errorf("update output lacks\n%s\n%s", want, out)
	}

	_, list, _ := runCatalog(t, "--file", file)
	if !strings.Contains(list, "uses removed APIs: extensions/v1beta1 DaemonSet (removed in v1.16), extensions/v1beta1 Deployment (removed in v1.16)") {
		t.Errorf("catalog listing:\n%s", list)
	}
}

// The catalog lists a version's images for all its files together (v3.2:
// etcd.yaml, rbac.yaml, calico.yaml): update compares them with all the
// files together, so a file holding only some of them is no difference.
func TestCatalogUpdateComparesImagesPerVersion(t *testing.T) {
	files := map[string]string{
		"/v3.2.99/etcd.yaml":   "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: calico-etcd, namespace: kube-system}\nspec:\n  template:\n    spec:\n      containers: [{name: etcd, image: quay.io/coreos/etcd:v3.3.9}]\n",
		"/v3.2.99/calico.yaml": "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: calico-node, namespace: kube-system}\nspec:\n  template:\n    spec:\n      containers: [{name: calico-node, image: quay.io/calico/node:v3.2.8}]\n",
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b, ok := files["/v3.2.99/"+path.Base(r.URL.Path)]; ok {
			w.Write([]byte(b))
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	old := catalogHTTPClient
	catalogHTTPClient = srv.Client()
	t.Cleanup(func() { catalogHTTPClient = old })
	entry := func(version, images string) string {
		return `  - version: ` + version + `
    kubernetes: [v1.10]
    manifests:
      - url: ` + srv.URL + `/` + version + `/etcd.yaml
        sha256: ""
      - url: ` + srv.URL + `/` + version + `/calico.yaml
        sha256: ""
    images: ` + images + `
    arm64: arch-suffixed tags
`
	}
	file := filepath.Join(t.TempDir(), "calico.yaml")
	body := "versions:\n" + entry("v3.2.99", "[quay.io/coreos/etcd:v3.3.9, quay.io/calico/node:v3.2.8]") +
		entry("v3.2.98", "[quay.io/coreos/etcd:v3.1.10, quay.io/calico/node:v3.2.8]")
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, err := runCatalog(t, "update", "--file", file, "--cache", t.TempDir())
	if code != 0 {
		t.Fatalf("exit %d: %v\n%s", code, err, out)
	}
	if regexp.MustCompile(`v3\.2\.99[^\n]*images differ`).MatchString(out) {
		t.Errorf("v3.2.99's files use exactly its images, yet:\n%s", out)
	}
	want := "v3.2.98: images differ from the catalog: manifest also uses quay.io/coreos/etcd:v3.3.9; manifest does not use quay.io/coreos/etcd:v3.1.10"
	if !strings.Contains(out, want) {
		t.Errorf("update output lacks\n%s\n%s", want, out)
	}
}

// Trust on first use: --lock writes the sums of unpinned files to the lock
// (not the catalog); fetch and scenario loading then use them, and a file
// that changes after is refused.
func TestCatalogUpdateLockTrustsOnFirstUse(t *testing.T) {
	srv, manifest := fakeUpstream(t)
	sum := manifestcache.Sum(manifest)
	file := writeCatalog(t, srv.URL, "", false)
	before, _ := os.ReadFile(file)
	lockPath := filepath.Join(t.TempDir(), "pins.lock")
	t.Setenv(catalog.LockEnv, lockPath)
	cache := t.TempDir()

	code, out, err := runCatalog(t, "update", "--file", file, "--cache", cache, "--lock")
	if code != 0 {
		t.Fatalf("exit %d: %v\n%s", code, err, out)
	}
	if !strings.Contains(out, "v3.99.1 calico.yaml: trusted on first use "+sum) || !strings.Contains(out, "wrote 1 trust-on-first-use pins to "+lockPath) {
		t.Errorf("update --lock output:\n%s", out)
	}
	if after, _ := os.ReadFile(file); !bytes.Equal(before, after) {
		t.Error("--lock changed the catalog file")
	}
	lock, err := catalog.LoadLock(lockPath)
	if err != nil || lock.Pins[srv.URL+"/v3.99.1/calico.yaml"] != sum {
		t.Fatalf("lock %+v, %v", lock, err)
	}
	// Again: unchanged, nothing written.
	code, out, _ = runCatalog(t, "update", "--file", file, "--cache", cache, "--lock")
	if code != 0 || !strings.Contains(out, "unchanged since first use "+sum) || strings.Contains(out, "wrote") {
		t.Errorf("second --lock (exit %d):\n%s", code, out)
	}
	// Fetch checks against the lock's sum.
	if code, out, err := runCatalog(t, "fetch", "--file", file, "--cache", cache); code != 0 || strings.Contains(out, "not pinned") {
		t.Errorf("fetch with a lock (exit %d, %v):\n%s", code, err, out)
	}
	// A changed file is refused, and the lock keeps the first sum.
	lock.Pins[srv.URL+"/v3.99.1/calico.yaml"] = strings.Repeat("0", 64)
	if err := lock.Write(); err != nil {
		t.Fatal(err)
	}
	code, out, err = runCatalog(t, "update", "--file", file, "--cache", cache, "--lock")
	if code == 0 || !strings.Contains(out, "CHANGED since first use") || err == nil || !strings.Contains(err.Error(), "delete its line") {
		t.Errorf("changed file (exit %d, %v):\n%s", code, err, out)
	}
	if l, _ := catalog.LoadLock(lockPath); l.Pins[srv.URL+"/v3.99.1/calico.yaml"] != strings.Repeat("0", 64) {
		t.Error("a changed file was re-trusted")
	}
}
