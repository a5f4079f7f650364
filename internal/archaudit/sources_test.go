package archaudit

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/cnimatrix/cnimatrix/internal/images"
	"github.com/cnimatrix/cnimatrix/internal/logx"
)

// TestAuditImportedImages: images exported here (a two-arch index as an
// OCI layout tar.gz, named as containerd names it; a single amd64 image as
// a docker save tarball, written by docker itself when there is a Docker
// engine, else by go-containerregistry) are imported, pushed into a
// harness registry as a run does, and audited there: the index keeps its
// digest and both platforms (ok for arm64 and amd64, binaries read from
// the layers), the docker save image has no arm64 variant.
func TestAuditImportedImages(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	idx := index(t, map[string]v1.Image{"amd64": calicoNode(t, "amd64", "amd64"), "arm64": calicoNode(t, "arm64", "arm64")})
	lay, err := layout.Write(filepath.Join(dir, "layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lay.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"io.containerd.image.name": "quay.io/calico/node:v3.32.1", "org.opencontainers.image.ref.name": "v3.32.1",
	})); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "node.tar.gz")
	tarGz(t, filepath.Join(dir, "layout"), archive)

	amd := calicoNode(t, "amd64", "amd64")
	saved := filepath.Join(dir, "cni.tar")
	dockerSave(t, ctx, "quay.io/calico/cni:v3.32.1-amd64", amd, saved)

	s, err := images.OpenStore(filepath.Join(dir, "imported"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := images.ImportFiles(ctx, s, []string{archive, saved})
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := idx.Digest()
	if len(got) != 2 || got[0].Ref != "quay.io/calico/node:v3.32.1" || got[0].Digest != wd.String() ||
		strings.Join(got[0].Platforms, ",") != "linux/amd64,linux/arm64/v8" ||
		got[1].Ref != "quay.io/calico/cni:v3.32.1-amd64" || strings.Join(got[1].Platforms, ",") != "linux/amd64" {
		t.Fatalf("imported %+v", got)
	}

	reg, err := images.StartRegistry(ctx, "127.0.0.1:0", logx.Discard(), images.RegistryLinkStore(s))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	for _, im := range got {
		obj, err := s.Get(im.Ref)
		if err != nil {
			t.Fatal(err)
		}
		if err := reg.Push(ctx, im.Ref, obj); err != nil {
			t.Fatal(err)
		}
	}
	mirrors := map[string]string{"*": "http://" + reg.Addr()}
	rep := audit(t, refs("quay.io/calico/node:v3.32.1", "quay.io/calico/cni:v3.32.1-amd64"), "arm64", Options{Mirrors: mirrors})
	wantKind(t, rep.Findings[0], OK, "/usr/bin/calico-node is aarch64")
	wantKind(t, rep.Findings[1], NoVariant)
	rep = audit(t, refs("quay.io/calico/node:v3.32.1", "quay.io/calico/cni:v3.32.1-amd64"), "amd64", Options{Mirrors: mirrors})
	wantKind(t, rep.Findings[0], OK, "/usr/bin/calico-node is x86-64")
	wantKind(t, rep.Findings[1], OK, "/usr/bin/calico-node is x86-64")

	// Bad files say what is wrong with them.
	notImage := filepath.Join(dir, "notes.txt")
	_ = os.WriteFile(notImage, []byte("hello"), 0o644)
	tagOnly := filepath.Join(dir, "tag-only")
	l2, _ := layout.Write(tagOnly, empty.Index)
	_ = l2.AppendIndex(idx, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "v3.32.1"}))
	emptyLayout := filepath.Join(dir, "empty")
	if _, err := layout.Write(emptyLayout, empty.Index); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		notImage:                      "not a tarball of images",
		tagOnly:                       `no full image name (registry/repository:tag)`,
		filepath.Join(dir, "missing"): "no such file",
		emptyLayout:                   "index.json names no image",
	} {
		if _, err := images.ImportFiles(ctx, s, []string{path}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("import %s: %v, want %q", filepath.Base(path), err, want)
		}
	}
}

// TestAuditPulledThroughImages: an image the harness registry never held,
// fetched from its upstream (a plain registry standing in for quay.io) on
// the audit's first request, is audited on its own layers: an index whose
// arm64 entry holds x86-64 binaries is mislabeled.
func TestAuditPulledThroughImages(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	up := newRegistry(t)
	upRef, _ := name.ParseReference(up.host + "/calico/node:v3.2.0")
	if err := remote.WriteIndex(upRef, index(t, map[string]v1.Image{
		"amd64": calicoNode(t, "amd64", "amd64"), "arm64": calicoNode(t, "arm64", "amd64"),
	})); err != nil {
		t.Fatal(err)
	}
	reg, err := images.StartRegistry(ctx, "127.0.0.1:0", logx.Discard(), images.RegistryPullThrough(images.Upstreams{"quay.io": up.srv.URL}, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	rep := audit(t, refs("quay.io/calico/node:v3.2.0", "quay.io/calico/node:v0.0.0"), "arm64", Options{Mirrors: map[string]string{"*": "http://" + reg.Addr()}})
	wantKind(t, rep.Findings[0], Mislabeled, "entrypoint /usr/bin/calico-node is x86-64, not aarch64")
	if rep.Findings[1].Kind == OK {
		t.Errorf("an image missing upstream too audited %s", rep.Findings[1].Kind)
	}
	if p := reg.Pulled(); len(p) != 1 || !strings.HasPrefix(p[0], "quay.io/calico/node:v3.2.0 from ") {
		t.Errorf("pulled %v", p)
	}
}

func tarGz(t *testing.T, dir, out string) {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	err = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name = rel
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			defer src.Close()
			_, err = io.Copy(tw, src)
			return err
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
}

// dockerSave writes img as ref in docker save's format: by docker itself
// (load, save, remove) when a Docker engine answers.
func dockerSave(t *testing.T, ctx context.Context, ref string, img v1.Image, out string) {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	if exec.CommandContext(ctx, "docker", "version").Run() != nil {
		t.Logf("no Docker engine: docker save tarball written by go-containerregistry")
		if err := tarball.WriteToFile(out, tag, img); err != nil {
			t.Fatal(err)
		}
		return
	}
	tmp := out + ".load"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(tmp)
	if b, err := exec.CommandContext(ctx, "docker", "load", "-i", tmp).CombinedOutput(); err != nil {
		t.Fatalf("docker load: %v: %s", err, b)
	}
	defer exec.Command("docker", "rmi", "-f", ref).Run()
	if b, err := exec.CommandContext(ctx, "docker", "save", "-o", out, ref).CombinedOutput(); err != nil {
		t.Fatalf("docker save: %v: %s", err, b)
	}
}
