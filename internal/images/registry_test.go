package images

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

func startTestRegistry(t *testing.T, opts ...RegistryOption) *Registry {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r, err := StartRegistry(ctx, "127.0.0.1:0", ociTestCache(t, t.TempDir()).Log, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	})
	return r
}

// TestRegistryPushPull pushes a two-arch index from the store and pulls it
// back with go-containerregistry's client, per platform, as a node would.
func TestRegistryPushPull(t *testing.T) {
	ctx := context.Background()
	s, err := OpenStore(filepath.Join(t.TempDir(), "oci"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "docker.io/cnimatrix/test:1", storeTestIndex(t, "reg")); err != nil {
		t.Fatal(err)
	}
	stored, err := s.Get("docker.io/cnimatrix/test:1")
	if err != nil {
		t.Fatal(err)
	}
	blobDir := t.TempDir()
	r := startTestRegistry(t, RegistryBlobDir(blobDir), RegistryLinkStore(s))
	if !strings.HasPrefix(r.Addr(), "127.0.0.1:") || strings.HasSuffix(r.Addr(), ":0") {
		t.Fatalf("Addr %q", r.Addr())
	}
	t0 := time.Now()
	if err := r.Push(ctx, "cnimatrix/test:1", stored); err != nil {
		t.Fatal(err)
	}
	t.Logf("push: %s", time.Since(t0))
	t0 = time.Now()
	if err := r.Push(ctx, "docker.io/cnimatrix/test:1", stored); err != nil {
		t.Fatal(err)
	}
	t.Logf("second push: %s", time.Since(t0))
	amd, _ := ImageForPlatform(stored, "amd64")
	if err := r.Push(ctx, "quay.io/cnimatrix/test:1", amd); err != nil {
		t.Fatal(err)
	}

	// Blobs from the store were linked, not copied.
	layers, _ := amd.Layers()
	ld, _ := layers[0].Digest()
	a, err1 := os.Stat(filepath.Join(blobDir, "sha256", ld.Hex))
	b, err2 := os.Stat(s.BlobPath(ld))
	if err1 != nil || err2 != nil || !os.SameFile(a, b) {
		t.Errorf("layer blob not hard-linked from the store: %v %v", err1, err2)
	}

	want, _ := stored.Digest()
	ref, err := name.ParseReference(r.Addr() + "/docker.io/cnimatrix/test:1")
	if err != nil {
		t.Fatal(err)
	}
	ii, err := remote.Index(ref, remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := ii.Digest(); got != want {
		t.Fatalf("pulled index %s, pushed %s", got, want)
	}
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := remote.Image(ref, remote.WithContext(ctx), remote.WithPlatform(v1.Platform{OS: "linux", Architecture: arch}))
		if err != nil {
			t.Fatalf("%s: %v", arch, err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Architecture != arch {
			t.Errorf("asked for %s, got %s", arch, cf.Architecture)
		}
		ls, _ := img.Layers()
		files := ociLayerEntries(t, ls[0])
		if got := files["etc/which"].Content; got != "reg "+arch+"\n" {
			t.Errorf("%s layer content %q", arch, got)
		}
	}
	// The quay.io copy is its own repository: a single image, not the index.
	qref, _ := name.ParseReference(r.Addr() + "/quay.io/cnimatrix/test:1")
	desc, err := remote.Get(qref, remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if !desc.MediaType.IsImage() {
		t.Errorf("quay.io copy has media type %s", desc.MediaType)
	}
	// Ranged blob reads work (containerd resumes downloads with them).
	req, _ := http.NewRequest(http.MethodGet, "http://"+r.Addr()+"/v2/docker.io/cnimatrix/test/blobs/"+ld.String(), nil)
	req.Header.Set("Range", "bytes=0-9")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || len(body) != 10 {
		t.Errorf("range read: %d, %d bytes", resp.StatusCode, len(body))
	}
}

func TestRegistryMissingImage(t *testing.T) {
	ctx := context.Background()
	r := startTestRegistry(t)
	ref, _ := name.ParseReference(r.Addr() + "/docker.io/library/busybox:1.36")
	_, err := remote.Get(ref, remote.WithContext(ctx))
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusNotFound {
		t.Fatalf("want a 404 transport error, got %v", err)
	}
	if !strings.Contains(err.Error(), "NAME_UNKNOWN") && !strings.Contains(err.Error(), "MANIFEST_UNKNOWN") {
		t.Errorf("error says nothing useful: %v", err)
	}
	t.Logf("missing image error: %v", err)
	if got := r.Misses(); len(got) != 1 || got[0] != "docker.io/library/busybox:1.36" {
		t.Errorf("misses %v", got)
	}
	defer func() {
		// Push's own existence checks are not misses.
		if got := r.Misses(); len(got) != 1 {
			t.Errorf("misses after push %v", got)
		}
	}()
	// A known repository with an unknown tag.
	if err := r.Push(ctx, "docker.io/library/busybox:1.35", storeTestIndex(t, "bb")); err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Get(ref, remote.WithContext(ctx)); !errors.As(err, &terr) || terr.StatusCode != http.StatusNotFound ||
		!strings.Contains(err.Error(), "MANIFEST_UNKNOWN") {
		t.Errorf("unknown tag: %v", err)
	}
}

func TestRegistryStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r, err := StartRegistry(ctx, "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for delay := 10 * time.Millisecond; ; delay = min(delay*2, 500*time.Millisecond) {
		resp, err := http.Get("http://" + r.Addr() + "/v2/")
		if err == nil {
			resp.Body.Close()
		}
		_, serr := os.Stat(r.blobDir)
		if err != nil && os.IsNotExist(serr) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry not stopped and cleaned after its context ended: %v, %v", err, serr)
		}
		time.Sleep(delay)
	}
}

func TestWriteContainerdHosts(t *testing.T) {
	dir := t.TempDir()
	if err := WriteContainerdHosts(dir, "172.18.0.1:5000", []string{"docker.io", "quay.io", "registry.k8s.io", "myreg:5443"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "docker.io", "hosts.toml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`server = "http://172.18.0.1:5000/v2/docker.io"`,
		"override_path = true",
		`capabilities = ["pull", "resolve"]`,
		"registry-1.docker.io",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("docker.io hosts.toml lacks %q:\n%s", want, b)
		}
	}
	q, _ := os.ReadFile(filepath.Join(dir, "quay.io", "hosts.toml"))
	if !strings.Contains(string(q), `server = "http://172.18.0.1:5000/v2/quay.io"`) {
		t.Errorf("quay.io hosts.toml:\n%s", q)
	}
	p, err := os.ReadFile(filepath.Join(dir, "myreg_5443_", "hosts.toml"))
	if err != nil || !strings.Contains(string(p), "/v2/myreg_5443\"") {
		t.Errorf("host with port: %v\n%s", err, p)
	}
	if err := WriteContainerdHosts(dir, "http://x:1", []string{"docker.io"}); err == nil {
		t.Error("URL accepted as endpoint")
	}
}
