package images

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// fakeUpstream is a plain registry (go-containerregistry's, in memory)
// standing in for docker.io or quay.io, counting what it is asked.
type fakeUpstream struct {
	srv  *httptest.Server
	mu   sync.Mutex
	hits []string // "GET /v2/..."
}

func startFakeUpstream(t *testing.T) *fakeUpstream {
	t.Helper()
	f := &fakeUpstream{}
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		f.mu.Lock()
		f.hits = append(f.hits, req.Method+" "+req.URL.Path)
		f.mu.Unlock()
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeUpstream) host() string { return strings.TrimPrefix(f.srv.URL, "http://") }

// push stores obj upstream as repo:tag (repo as the upstream names it).
func (f *fakeUpstream) push(t *testing.T, repo string, obj ImageOrIndex) {
	t.Helper()
	ref, err := name.ParseReference(f.host()+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	switch o := obj.(type) {
	case v1.ImageIndex:
		err = remote.WriteIndex(ref, o)
	case v1.Image:
		err = remote.Write(ref, o)
	}
	if err != nil {
		t.Fatal(err)
	}
	f.reset()
}

func (f *fakeUpstream) reset() {
	f.mu.Lock()
	f.hits = nil
	f.mu.Unlock()
}

// blobGets are the blob downloads asked of the upstream since reset.
func (f *fakeUpstream) blobGets() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, h := range f.hits {
		if strings.HasPrefix(h, "GET ") && strings.Contains(h, "/blobs/sha256:") {
			out = append(out, h[strings.LastIndex(h, "/")+1:])
		}
	}
	return out
}

func imageBlobs(t *testing.T, img v1.Image) []string {
	t.Helper()
	var out []string
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		d, _ := l.Digest()
		out = append(out, d.String())
	}
	cn, _ := img.ConfigName()
	return append(out, cn.String())
}

// TestRegistryPullsThrough: the harness registry, given an upstream for
// docker.io, answers an image it was never given by fetching it there:
// the index and its manifests at once, only the layers of the platform
// asked for, each once; a second run's registry sharing the blob cache
// asks the upstream for manifests only. What the upstream lacks, and an
// upstream that does not answer, end as the registry's own not-found.
func TestRegistryPullsThrough(t *testing.T) {
	up := startFakeUpstream(t)
	idx := storeTestIndex(t, "upstream")
	up.push(t, "calico/node:v9.9.9", idx)

	blobCache := t.TempDir()
	r := startTestRegistry(t, RegistryPullThrough(Upstreams{"docker.io": up.srv.URL}, blobCache))
	local := func(ref string) name.Reference {
		t.Helper()
		n, err := name.ParseReference(r.Addr()+"/"+ref, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	t0 := time.Now()
	got, err := remote.Index(local("docker.io/calico/node:v9.9.9"))
	if err != nil {
		t.Fatalf("index through the registry: %v", err)
	}
	gd, _ := got.Digest()
	wd, _ := idx.Digest()
	if gd != wd {
		t.Fatalf("index digest %s, upstream has %s", gd, wd)
	}
	if b := up.blobGets(); len(b) != 0 {
		t.Errorf("the index alone fetched blobs: %v", b)
	}
	arm, err := remote.Image(local("docker.io/calico/node:v9.9.9"), remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "arm64"}))
	if err != nil {
		t.Fatal(err)
	}
	if cf, err := arm.ConfigFile(); err != nil || cf.Architecture != "arm64" {
		t.Fatalf("arm64 config through the registry: %v %v", cf, err)
	}
	ls, _ := arm.Layers()
	rc, err := ls[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(rc)
	rc.Close()
	if !strings.Contains(string(body), "upstream arm64") {
		t.Errorf("arm64 layer content %q", body)
	}
	t.Logf("pulled through (index, arm64 image, its layer): %s", time.Since(t0).Truncate(time.Millisecond))
	wantArm, _ := ImageForPlatform(idx, "arm64")
	wantAmd, _ := ImageForPlatform(idx, "amd64")
	fetched := up.blobGets()
	for _, b := range imageBlobs(t, wantArm) {
		if !slices.Contains(fetched, b) {
			t.Errorf("arm64 blob %s not fetched upstream (fetched %v)", b, fetched)
		}
	}
	for _, b := range imageBlobs(t, wantAmd) {
		if slices.Contains(fetched, b) {
			t.Errorf("amd64 blob %s fetched though no one asked for amd64", b)
		}
	}
	slices.Sort(fetched)
	if len(slices.Compact(slices.Clone(fetched))) != len(fetched) {
		t.Errorf("a blob was fetched twice: %v", fetched)
	}
	if p := r.Pulled(); len(p) != 1 || !strings.HasPrefix(p[0], "docker.io/calico/node:v9.9.9 from http://") {
		t.Errorf("Pulled() = %v", p)
	}
	if o := r.OriginOf("calico/node:v9.9.9"); o != (Origin{Source: OriginPulledThrough, Detail: up.srv.URL}) {
		t.Errorf("OriginOf(calico/node:v9.9.9) = %+v, want pulled-through from %s", o, up.srv.URL)
	}

	// A second run: a new registry, the same blob cache.
	up.reset()
	r2 := startTestRegistry(t, RegistryPullThrough(Upstreams{"docker.io": up.srv.URL}, blobCache))
	n2, _ := name.ParseReference(r2.Addr()+"/docker.io/calico/node:v9.9.9", name.Insecure)
	arm2, err := remote.Image(n2, remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "arm64"}))
	if err != nil {
		t.Fatal(err)
	}
	ls2, _ := arm2.Layers()
	rc2, err := ls2[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, rc2)
	rc2.Close()
	if b := up.blobGets(); len(b) != 0 {
		t.Errorf("second run fetched blobs upstream again: %v", b)
	}

	// Not upstream: the registry's not-found, recorded as a miss.
	if _, err := remote.Index(local("docker.io/calico/node:v0.0.1")); err == nil {
		t.Error("an image the upstream lacks was served")
	}
	if m := r.Misses(); !slices.Contains(m, "docker.io/calico/node:v0.0.1") {
		t.Errorf("misses %v", m)
	}
	if o := r.OriginOf("docker.io/calico/node:v0.0.1"); o.Source != OriginMissing {
		t.Errorf("OriginOf(an image no one had) = %+v, want missing", o)
	}
	// Hosts without an upstream are not pulled through.
	if _, err := remote.Index(local("quay.io/calico/node:v9.9.9")); err == nil {
		t.Error("quay.io has no upstream here, yet the image was served")
	}

	// An upstream that does not answer: not-found at once, and not asked
	// again by the next request.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	r3 := startTestRegistry(t, RegistryPullThrough(Upstreams{"quay.io": dead}, ""))
	n3, _ := name.ParseReference(r3.Addr()+"/quay.io/calico/node:v9.9.9", name.Insecure)
	t0 = time.Now()
	if _, err := remote.Index(n3); err == nil {
		t.Error("served from a dead upstream")
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("a dead upstream took %s", d)
	}
	if until, down := r3.pull.isDown("quay.io"); !down || time.Until(until) < 30*time.Second {
		t.Errorf("dead upstream not remembered as down (until %s)", until)
	}
}

func TestParseUpstream(t *testing.T) {
	host, base, err := ParseUpstream("Docker.io=http://127.0.0.1:5001")
	if err != nil || host != "docker.io" || base != "http://127.0.0.1:5001" {
		t.Errorf("got %q %q %v", host, base, err)
	}
	for _, bad := range []string{"docker.io", "=http://x", "docker.io=", "docker.io=ftp://x", "docker.io=http://x/path", "docker.io=localhost:5000"} {
		if _, _, err := ParseUpstream(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// LoadIntoDocker (run --upstream-node-images) loads the host arch's image
// of a multi-arch index through the pull-through into a real Docker
// engine, and refuses an index without that arch.
func TestLoadIntoDockerThroughPullThrough(t *testing.T) {
	needDocker(t)
	ctx := context.Background()
	up := startFakeUpstream(t)
	tag := fmt.Sprintf("v0.0.%d", time.Now().UnixNano())
	idx := storeTestIndex(t, "node")
	up.push(t, "cnimatrix/loadthrough:"+tag, idx)
	r := startTestRegistry(t, RegistryPullThrough(Upstreams{"docker.io": up.srv.URL}, t.TempDir()))
	ref := "docker.io/cnimatrix/loadthrough:" + tag
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", ref).Run() })
	if err := r.LoadIntoDocker(ctx, ref, "amd64", ociTestCache(t, t.TempDir()).Log); err != nil {
		t.Fatal(err)
	}
	amd, _ := ImageForPlatform(idx, "amd64")
	cn, _ := amd.ConfigName()
	out, err := exec.Command("docker", "image", "inspect", "--format", "{{.Id}} {{.Architecture}}", ref).Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != cn.String()+" amd64" {
		t.Errorf("docker has %q, want %s amd64", got, cn)
	}
	if o := r.OriginOf(ref); o.Source != OriginPulledThrough || o.Detail != up.srv.URL {
		t.Errorf("OriginOf(%s) = %+v", ref, o)
	}
	if err := r.LoadIntoDocker(ctx, ref, "riscv64", nil); err == nil {
		t.Error("an index without linux/riscv64 was loaded as riscv64")
	}
	if err := r.LoadIntoDocker(ctx, "docker.io/cnimatrix/loadthrough:absent", "amd64", nil); err == nil {
		t.Error("an image no upstream has was loaded")
	}
}
