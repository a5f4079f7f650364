package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
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
	imported := Origin{Source: OriginImported, Detail: "/tmp/test.tar"}
	if err := r.PushAs(ctx, "quay.io/cnimatrix/test:1", amd, imported); err != nil {
		t.Fatal(err)
	}
	for ref, want := range map[string]Origin{
		"cnimatrix/test:1": {Source: OriginBuilt}, "docker.io/cnimatrix/test:1": {Source: OriginBuilt},
		"quay.io/cnimatrix/test:1": imported, "quay.io/cnimatrix/test:2": {},
	} {
		if got := r.OriginOf(ref); got != want {
			t.Errorf("OriginOf(%s) = %+v, want %+v", ref, got, want)
		}
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

// TestContainerdPullsThroughHosts starts a private containerd 2.x (the one
// the node images carry, built from source) and pulls a workload image with
// the hosts.toml files WriteContainerdHosts writes: the request must reach
// the local registry under /v2/docker.io/..., and a missing image must fail
// with "not found", without any attempt at the upstream.
func TestContainerdPullsThroughHosts(t *testing.T) {
	c := workloadTestCache(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bin, err := c.Containerd(ctx, runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := c.WorkloadImages(ctx, []string{"amd64", "arm64"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Store()
	if err != nil {
		t.Fatal(err)
	}
	// quay.io is pulled through from a fake upstream holding the probe
	// image (as built here) under a name nothing pushes.
	up := startFakeUpstream(t)
	up.push(t, "cnimatrix/probe-upstream:1", imgs[ProbeImage])
	r := startTestRegistry(t, RegistryLinkStore(s), RegistryPullThrough(Upstreams{"quay.io": up.srv.URL}, ""))
	if err := r.Push(ctx, NginxImage, imgs[NginxImage]); err != nil {
		t.Fatal(err)
	}
	hosts := t.TempDir()
	if err := WriteContainerdHosts(hosts, r.Addr(), []string{"docker.io", "quay.io"}); err != nil {
		t.Fatal(err)
	}

	// A containerd of its own: own root, state, socket; no CRI, no NRI.
	dir, err := os.MkdirTemp("", "cnimatrix-ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "containerd.sock")
	cfg := fmt.Sprintf(`version = 3
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime", "io.containerd.cri.v1.images", "io.containerd.nri.v1.nri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc", filepath.Join(dir, "opt"))
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, _ := os.Create(filepath.Join(dir, "containerd.log"))
	daemon := exec.Command(filepath.Join(bin, "containerd"), "--config", filepath.Join(dir, "config.toml"))
	daemon.Stdout, daemon.Stderr = logf, logf
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = daemon.Process.Kill()
		_ = daemon.Wait()
		logf.Close()
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("clean %s: %v", dir, err)
		}
	})
	ctr := func(args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, filepath.Join(bin, "ctr"), append([]string{"--address", sock, "--namespace", "cnimatrix-test"}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	for delay := 50 * time.Millisecond; ; delay = min(delay*2, time.Second) {
		if _, err := ctr("version"); err == nil {
			break
		}
		if ctx.Err() != nil {
			b, _ := os.ReadFile(filepath.Join(dir, "containerd.log"))
			t.Fatalf("containerd did not come up:\n%s", b)
		}
		time.Sleep(delay)
	}

	t0 := time.Now()
	out, err := ctr("images", "pull", "--hosts-dir", hosts, "--platform", "linux/arm64", NginxImage)
	if err != nil {
		t.Fatalf("pull: %v\n%s", err, out)
	}
	t.Logf("ctr pull %s (linux/arm64) through the registry: %s", NginxImage, time.Since(t0).Truncate(time.Millisecond))
	ls, _ := ctr("images", "ls")
	want, _ := imgs[NginxImage].Digest()
	if !strings.Contains(ls, NginxImage) || !strings.Contains(ls, want.String()) {
		t.Errorf("image list lacks %s@%s:\n%s", NginxImage, want, ls)
	}
	content, _ := ctr("content", "ls")
	arm, _ := ImageForPlatform(imgs[NginxImage], "arm64")
	layers, _ := arm.Layers()
	ld, _ := layers[0].Digest()
	if !strings.Contains(content, ld.String()) {
		t.Errorf("arm64 layer %s not fetched", ld)
	}

	t0 = time.Now()
	out, err = ctr("images", "pull", "--hosts-dir", hosts, "--platform", "linux/arm64", "quay.io/cnimatrix/probe-upstream:1")
	if err != nil {
		t.Fatalf("pull through to the upstream: %v\n%s", err, out)
	}
	t.Logf("ctr pull quay.io/cnimatrix/probe-upstream:1 (linux/arm64) pulled through: %s", time.Since(t0).Truncate(time.Millisecond))
	probeArm, _ := ImageForPlatform(imgs[ProbeImage], "arm64")
	content, _ = ctr("content", "ls")
	for _, b := range imageBlobs(t, probeArm) {
		if !strings.Contains(content, b) {
			t.Errorf("probe arm64 blob %s not in containerd after the pull", b)
		}
	}
	if p := r.Pulled(); len(p) != 1 || !strings.HasPrefix(p[0], "quay.io/cnimatrix/probe-upstream:1 from ") {
		t.Errorf("Pulled() = %v", p)
	}

	out, err = ctr("images", "pull", "--hosts-dir", hosts, "docker.io/library/busybox:1.36")
	t.Logf("missing image: %v: %s", err, out)
	if err == nil || !strings.Contains(out, "not found") || strings.Contains(out, "registry-1.docker.io") {
		t.Errorf("a missing image should fail with not found from the local registry")
	}
	if m := r.Misses(); !slices.Contains(m, "docker.io/library/busybox:1.36") {
		t.Errorf("registry did not see the miss: %v", m)
	}
}
