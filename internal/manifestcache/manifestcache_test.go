package manifestcache

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

const body = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: calico-config\n"

// server serves body at /calico.yaml and 404 elsewhere, counting requests.
func server(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path != "/calico.yaml" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func TestFetchPinnedDownloadsThenServesFromCacheWithoutServer(t *testing.T) {
	srv, hits := server(t)
	c := New(t.TempDir())
	pin := Sum([]byte(body))
	url := srv.URL + "/calico.yaml"
	r, err := c.Fetch(context.Background(), url, pin)
	if err != nil {
		t.Fatal(err)
	}
	if r.FromCache || r.SHA256 != pin || r.Warning != "" {
		t.Errorf("first fetch: %+v", r)
	}
	if got, _ := os.ReadFile(r.Path); string(got) != body {
		t.Errorf("cached content %q", got)
	}
	srv.Close() // offline from here on
	r2, err := c.Fetch(context.Background(), url, pin)
	if err != nil {
		t.Fatalf("cache hit without the server: %v", err)
	}
	if !r2.FromCache || r2.Path != r.Path {
		t.Errorf("second fetch: %+v", r2)
	}
	if hits.Load() != 1 {
		t.Errorf("server saw %d requests, want 1", hits.Load())
	}
}

func TestFetchMismatchIsAnErrorNamingBothSumsAndCachesNothing(t *testing.T) {
	srv, _ := server(t)
	dir := t.TempDir()
	c := New(dir)
	wrong := strings.Repeat("ab", 32)
	_, err := c.Fetch(context.Background(), srv.URL+"/calico.yaml", wrong)
	var me *MismatchError
	if !errors.As(err, &me) {
		t.Fatalf("want a MismatchError, got %v", err)
	}
	if !strings.Contains(err.Error(), wrong) || !strings.Contains(err.Error(), Sum([]byte(body))) {
		t.Errorf("error should name both sums: %v", err)
	}
	ents, _ := os.ReadDir(dir + "/sha256")
	if len(ents) != 0 {
		t.Errorf("a mismatching download was left in the cache: %v", ents)
	}
	if _, err := c.Cached(srv.URL+"/calico.yaml", Sum([]byte(body))); !errors.Is(err, ErrNotCached) {
		t.Errorf("mismatching download must not be cached under its real sum either: %v", err)
	}
}

func TestFetch404NamesURLAndStatus(t *testing.T) {
	srv, _ := server(t)
	url := srv.URL + "/v3.99.0/calico.yaml"
	_, err := New(t.TempDir()).Fetch(context.Background(), url, "")
	var he *HTTPError
	if !errors.As(err, &he) || he.StatusCode != 404 {
		t.Fatalf("want a 404 HTTPError, got %v", err)
	}
	if !strings.Contains(err.Error(), url) || !strings.Contains(err.Error(), "404") {
		t.Errorf("error should name URL and status: %v", err)
	}
}

func TestFetchUnpinnedDownloadsEveryTimeAndWarns(t *testing.T) {
	srv, hits := server(t)
	c := New(t.TempDir())
	url := srv.URL + "/calico.yaml"
	for i := range 2 {
		r, err := c.Fetch(context.Background(), url, "")
		if err != nil {
			t.Fatal(err)
		}
		if r.SHA256 != Sum([]byte(body)) || r.FromCache {
			t.Errorf("fetch %d: %+v", i, r)
		}
		if !strings.Contains(r.Warning, "not pinned") || !strings.Contains(r.Warning, r.SHA256) {
			t.Errorf("fetch %d: warning %q", i, r.Warning)
		}
	}
	if hits.Load() != 2 {
		t.Errorf("unpinned fetches hit the server %d times, want 2 (a cached copy of an unpinned file is not trusted)", hits.Load())
	}
}

func TestCachedOffline(t *testing.T) {
	c := New(t.TempDir())
	pin := Sum([]byte(body))
	if _, err := c.Cached("https://example.invalid/calico.yaml", pin); !errors.Is(err, ErrNotCached) {
		t.Errorf("empty cache: %v", err)
	}
	if _, err := c.Cached("https://example.invalid/calico.yaml", ""); err == nil || !strings.Contains(err.Error(), "not pinned") {
		t.Errorf("unpinned: %v", err)
	}
	// A cache entry whose bytes no longer match its name is corrupt, not a hit.
	os.MkdirAll(c.Dir+"/sha256", 0o755)
	os.WriteFile(c.path(pin), []byte("tampered"), 0o644)
	if _, err := c.Cached("https://example.invalid/calico.yaml", pin); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("corrupt entry: %v", err)
	}
}

func TestFetchUnreachableNamesURL(t *testing.T) {
	srv, _ := server(t)
	url := srv.URL + "/calico.yaml"
	srv.Close()
	_, err := New(t.TempDir()).Fetch(context.Background(), url, "")
	if err == nil || !strings.Contains(err.Error(), url) {
		t.Errorf("want an error naming %s, got %v", url, err)
	}
}

func TestFetchHonoursContext(t *testing.T) {
	srv, _ := server(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := New(t.TempDir()).Fetch(ctx, srv.URL+"/calico.yaml", ""); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
}

func TestFetchThroughAMirror(t *testing.T) {
	var asked atomic.Value
	mirror := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Store(r.URL.Path)
		if r.URL.Path != "/files/raw.githubusercontent.com/projectcalico/calico/v3.99.0/manifests/calico.yaml" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(body))
	}))
	t.Cleanup(mirror.Close)
	c := New(t.TempDir())
	c.Mirror = mirror.URL + "/files/"
	url := "https://raw.githubusercontent.com/projectcalico/calico/v3.99.0/manifests/calico.yaml"
	if got := c.Source(url); got != mirror.URL+"/files/raw.githubusercontent.com/projectcalico/calico/v3.99.0/manifests/calico.yaml" {
		t.Errorf("Source = %s", got)
	}
	r, err := c.Fetch(context.Background(), url, Sum([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	if r.FromCache {
		t.Errorf("first fetch came from the cache")
	}
	// The pin guards the mirror as it guards upstream.
	if _, err := c.Fetch(context.Background(), url, Sum([]byte("something else"))); err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Errorf("a mirror serving other bytes: %v", err)
	}
	// A file the mirror lacks is its 404, naming the mirror's URL.
	_, err = c.Fetch(context.Background(), "https://docs.tigera.io/archive/v3.15/manifests/calico.yaml", "")
	var he *HTTPError
	if !errors.As(err, &he) || he.StatusCode != 404 || !strings.Contains(err.Error(), mirror.URL+"/files/docs.tigera.io/archive/v3.15/manifests/calico.yaml") {
		t.Errorf("missing on the mirror: %v", err)
	}
}

func TestFetchThroughADirectoryMirror(t *testing.T) {
	dir := t.TempDir()
	rel := "raw.githubusercontent.com/projectcalico/calico/v3.99.0/manifests/calico.yaml"
	if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, rel)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, rel), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	c := New(t.TempDir())
	c.Mirror = "file://" + dir
	url := "https://" + rel
	r, err := c.Fetch(context.Background(), url, Sum([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	if r.FromCache || r.SHA256 != Sum([]byte(body)) {
		t.Errorf("fetch from a directory mirror: %+v", r)
	}
	if _, err := c.Fetch(context.Background(), url, Sum([]byte("other"))); err == nil || !strings.Contains(err.Error(), "sha256 mismatch") {
		t.Errorf("a directory serving other bytes: %v", err)
	}
	_, err = c.Fetch(context.Background(), "https://docs.tigera.io/archive/v3.15/manifests/calico.yaml", "")
	var he *HTTPError
	if !errors.As(err, &he) || he.StatusCode != 404 || !strings.Contains(err.Error(), "file://"+dir+"/docs.tigera.io/") {
		t.Errorf("missing in the directory mirror: %v", err)
	}
}
