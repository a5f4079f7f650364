package images

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// storeTestIndex is a two-arch index of small generated layers.
func storeTestIndex(t testing.TB, tag string) v1.ImageIndex {
	t.Helper()
	var imgs []v1.Image
	for _, arch := range []string{"amd64", "arm64"} {
		l, err := LayerFromFiles(LayerFiles{"etc/which": {Content: []byte(tag + " " + arch + "\n")}})
		if err != nil {
			t.Fatal(err)
		}
		img, err := NewImage(arch, []v1.Layer{l}, v1.Config{Entrypoint: []string{"/bin/true"}})
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, img)
	}
	ii, err := NewIndex(imgs...)
	if err != nil {
		t.Fatal(err)
	}
	return ii
}

func storeBlobCount(t testing.TB, s *Store) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(s.Dir(), "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") {
			n++
		}
	}
	return n
}

func TestCanonicalRef(t *testing.T) {
	for in, want := range map[string]string{
		"nginx:1.22":                        "docker.io/library/nginx:1.22",
		"docker.io/cnimatrix/nginx:1.22":    "docker.io/cnimatrix/nginx:1.22",
		"index.docker.io/cnimatrix/nginx:1": "docker.io/cnimatrix/nginx:1",
		"quay.io/coreos/flannel":            "quay.io/coreos/flannel:latest",
		"registry.k8s.io/pause:3.10.2":      "registry.k8s.io/pause:3.10.2",
		"localhost:5000/x/y:z":              "localhost:5000/x/y:z",
	} {
		got, err := CanonicalRef(in)
		if err != nil || got != want {
			t.Errorf("CanonicalRef(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := CanonicalRef("UPPER/case:x"); err == nil {
		t.Error("invalid reference accepted")
	}
}

func TestStorePutGet(t *testing.T) {
	ctx := context.Background()
	s, err := OpenStore(filepath.Join(t.TempDir(), "oci"))
	if err != nil {
		t.Fatal(err)
	}
	ii := storeTestIndex(t, "one")
	if err := s.Put(ctx, "cnimatrix/test:1", ii); err != nil {
		t.Fatal(err)
	}
	if !s.Has("docker.io/cnimatrix/test:1") || s.Has("docker.io/cnimatrix/test:2") {
		t.Fatal("Has is wrong")
	}
	got, err := s.Get("docker.io/cnimatrix/test:1")
	if err != nil {
		t.Fatal(err)
	}
	gi, ok := got.(v1.ImageIndex)
	if !ok {
		t.Fatalf("Get returned %T", got)
	}
	if err := validate.Index(gi); err != nil {
		t.Fatal(err)
	}
	d1, _ := ii.Digest()
	d2, _ := gi.Digest()
	if d1 != d2 {
		t.Fatalf("stored digest %s, put %s", d2, d1)
	}
	// A single image under another ref.
	img, err := ImageForPlatform(ii, "arm64")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "quay.io/x/y:arm", img); err != nil {
		t.Fatal(err)
	}
	gimg, err := s.Get("quay.io/x/y:arm")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := gimg.(v1.Image); !ok {
		t.Fatalf("Get of an image returned %T", gimg)
	}
	if err := validate.Image(gimg.(v1.Image)); err != nil {
		t.Fatal(err)
	}
	d, _ := s.Descriptor("quay.io/x/y:arm")
	if d.Platform == nil || d.Platform.Architecture != "arm64" {
		t.Errorf("image descriptor platform %v", d.Platform)
	}

	// Re-putting identical content touches nothing.
	idxFile := filepath.Join(s.Dir(), "index.json")
	before, _ := os.ReadFile(idxFile)
	st1, _ := os.Stat(idxFile)
	blobs := storeBlobCount(t, s)
	t0 := time.Now()
	if err := s.Put(ctx, "docker.io/cnimatrix/test:1", gi); err != nil {
		t.Fatal(err)
	}
	t.Logf("re-put of identical content: %s", time.Since(t0))
	after, _ := os.ReadFile(idxFile)
	st2, _ := os.Stat(idxFile)
	if string(before) != string(after) || !st1.ModTime().Equal(st2.ModTime()) || storeBlobCount(t, s) != blobs {
		t.Error("identical re-put changed the layout")
	}

	// Replacing a ref keeps one descriptor for it; Prune drops the old blobs.
	if err := s.Put(ctx, "docker.io/cnimatrix/test:1", storeTestIndex(t, "two")); err != nil {
		t.Fatal(err)
	}
	refs, _ := s.Refs()
	if fmt.Sprint(refs) != "[quay.io/x/y:arm docker.io/cnimatrix/test:1]" {
		t.Errorf("refs after replace: %v", refs)
	}
	freed, err := s.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// "two" adds 7 blobs; of "one" only the arm64 image (manifest, config,
	// layer) stays live, as quay.io/x/y:arm.
	if n := storeBlobCount(t, s); n != blobs+3 || freed == 0 {
		t.Errorf("after prune: %d blobs (had %d), freed %d", n, blobs, freed)
	}
	if _, err := s.Get("quay.io/x/y:arm"); err != nil {
		t.Errorf("prune broke a live image: %v", err)
	}
	if _, err := s.Get("docker.io/nope:1"); !errors.Is(err, ErrNotStored) {
		t.Errorf("missing ref: %v", err)
	}
}

func TestCachedImage(t *testing.T) {
	ctx := context.Background()
	c := ociTestCache(t, t.TempDir())
	builds := 0
	build := func(tag string) func(context.Context) (ImageOrIndex, error) {
		return func(context.Context) (ImageOrIndex, error) { builds++; return storeTestIndex(t, tag), nil }
	}
	a, err := c.CachedImage(ctx, "docker.io/cnimatrix/t:1", "k1", build("a"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.CachedImage(ctx, "docker.io/cnimatrix/t:1", "k1", build("a"))
	if err != nil {
		t.Fatal(err)
	}
	da, _ := a.Digest()
	db, _ := b.Digest()
	if builds != 1 || da != db {
		t.Fatalf("builds=%d digests %s %s", builds, da, db)
	}
	if _, err := c.CachedImage(ctx, "docker.io/cnimatrix/t:1", "k2", build("b")); err != nil || builds != 2 {
		t.Fatalf("new key: builds=%d err=%v", builds, err)
	}
}

func TestDockerLoad(t *testing.T) {
	needDocker(t)
	ctx := context.Background()
	ref := fmt.Sprintf("docker.io/cnimatrix/loadtest:%d", time.Now().UnixNano())
	img, err := ImageForPlatform(storeTestIndex(t, ref), "amd64")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", ref).Run() })
	lg := ociTestCache(t, t.TempDir()).Log
	t0 := time.Now()
	if err := DockerLoad(ctx, ref, img, lg); err != nil {
		t.Fatal(err)
	}
	cold := time.Since(t0)
	t0 = time.Now()
	if err := DockerLoad(ctx, ref, img, lg); err != nil {
		t.Fatal(err)
	}
	warm := time.Since(t0)
	t.Logf("docker load cold %s, warm %s", cold, warm)
	out, err := exec.Command("docker", "image", "inspect", "--format", "{{.Id}} {{.Os}}/{{.Architecture}}", ref).Output()
	if err != nil {
		t.Fatal(err)
	}
	cn, _ := img.ConfigName()
	if got := strings.TrimSpace(string(out)); got != cn.String()+" linux/amd64" {
		t.Errorf("docker has %q, want %s linux/amd64", got, cn)
	}
}

// TestStoreConcurrentPuts checks that writers of one layout (here
// goroutines; processes take the same flock) do not lose each other's refs.
func TestStoreConcurrentPuts(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "oci")
	errs := make(chan error, 6)
	for i := range 6 {
		go func() {
			s, err := OpenStore(dir)
			if err == nil {
				err = s.Put(ctx, fmt.Sprintf("docker.io/cnimatrix/c:%d", i), storeTestIndex(t, fmt.Sprint(i)))
			}
			errs <- err
		}()
	}
	for range 6 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	s, _ := OpenStore(dir)
	refs, err := s.Refs()
	if err != nil || len(refs) != 6 {
		t.Fatalf("refs %v, %v", refs, err)
	}
	for _, r := range refs {
		if _, err := s.Get(r); err != nil {
			t.Error(err)
		}
	}
}

// needDocker skips a test that needs a running Docker engine under -short
// or without one.
func needDocker(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs Docker")
	}
	if err := exec.Command("docker", "info").Run(); err != nil {
		t.Skipf("no Docker engine: %v", err)
	}
}
