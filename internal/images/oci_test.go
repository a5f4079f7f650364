package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/cnimatrix/cnimatrix/internal/logx"
)

// ociTestLog sends a logger's lines to t.Log.
type ociTestLog struct{ t testing.TB }

func (w ociTestLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func ociTestCache(t testing.TB, dir string) *Cache {
	t.Helper()
	c, err := NewCache(dir, logx.New(ociTestLog{t}, testing.Verbose()))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ociTarEntry is what a test wants to know about one tar member.
type ociTarEntry struct {
	Type    byte
	Mode    int64
	Link    string
	Content string
}

func ociLayerEntries(t testing.TB, l v1.Layer) map[string]ociTarEntry {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out := map[string]ociTarEntry{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out[h.Name] = ociTarEntry{h.Typeflag, h.Mode, h.Linkname, string(b)}
	}
	return out
}

// ociCheckDigests recomputes a layer's digests from its streams.
func ociCheckDigests(t testing.TB, l v1.Layer) {
	t.Helper()
	sum := func(open func() (io.ReadCloser, error)) (string, int64) {
		rc, err := open()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		h := sha256.New()
		n, err := io.Copy(h, rc)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("sha256:%x", h.Sum(nil)), n
	}
	d, _ := l.Digest()
	diff, _ := l.DiffID()
	size, _ := l.Size()
	gotD, gotSize := sum(l.Compressed)
	gotDiff, _ := sum(l.Uncompressed)
	if gotD != d.String() || gotSize != size || gotDiff != diff.String() {
		t.Fatalf("layer digests: have %s/%d/%s, streams give %s/%d/%s", d, size, diff, gotD, gotSize, gotDiff)
	}
}

func TestLayerFromFiles(t *testing.T) {
	l, err := LayerFromFiles(LayerFiles{
		"/etc/motd":          {Content: []byte("hi\n")},
		"usr/local/bin/tool": {Mode: 0o755, Content: []byte("#!/bin/sh\n")},
		"usr/local/bin/alt":  {Mode: fs.ModeSymlink, Target: "tool"},
		"var/empty":          {Mode: fs.ModeDir},
		"tmp":                {Mode: fs.ModeDir | fs.ModeSticky | 0o777},
	})
	if err != nil {
		t.Fatal(err)
	}
	ociCheckDigests(t, l)
	got := ociLayerEntries(t, l)
	want := map[string]ociTarEntry{
		"etc/motd":           {tar.TypeReg, 0o644, "", "hi\n"},
		"usr/local/bin/tool": {tar.TypeReg, 0o755, "", "#!/bin/sh\n"},
		"usr/local/bin/alt":  {tar.TypeSymlink, 0o777, "tool", ""},
		"var/empty/":         {tar.TypeDir, 0o755, "", ""},
		"tmp/":               {tar.TypeDir, 0o1777, "", ""},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("entries:\n got %v\nwant %v", got, want)
	}
	again, _ := LayerFromFiles(LayerFiles{"etc/motd": {Content: []byte("hi\n")}, "usr/local/bin/tool": {Mode: 0o755, Content: []byte("#!/bin/sh\n")},
		"usr/local/bin/alt": {Mode: fs.ModeSymlink, Target: "tool"}, "var/empty": {Mode: fs.ModeDir}, "tmp": {Mode: fs.ModeDir | fs.ModeSticky | 0o777}})
	d1, _ := l.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("same files, different digests %s %s", d1, d2)
	}
	if _, err := LayerFromFiles(LayerFiles{"dev/null": {Mode: fs.ModeDevice}}); err == nil {
		t.Error("device file accepted")
	}
}

func TestLayerFromDirAndTarball(t *testing.T) {
	ctx := context.Background()
	c := ociTestCache(t, t.TempDir())
	src := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "sub"), 0o750))
	must(os.WriteFile(filepath.Join(src, "sub", "bin"), []byte("ELF?"), 0o755))
	must(os.WriteFile(filepath.Join(src, "a.conf"), []byte("x=1\n"), 0o600))
	must(os.Symlink("sub/bin", filepath.Join(src, "link")))

	l, err := c.LayerFromDir(ctx, src, "/opt/app/")
	must(err)
	ociCheckDigests(t, l)
	got := ociLayerEntries(t, l)
	want := map[string]ociTarEntry{
		"opt/app/a.conf":  {tar.TypeReg, 0o600, "", "x=1\n"},
		"opt/app/link":    {tar.TypeSymlink, 0o777, "sub/bin", ""},
		"opt/app/sub/":    {tar.TypeDir, 0o750, "", ""},
		"opt/app/sub/bin": {tar.TypeReg, 0o755, "", "ELF?"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("entries:\n got %v\nwant %v", got, want)
	}
	if fl, ok := l.(*ociFileLayer); !ok || fl.file == "" {
		t.Errorf("dir layer is not file-backed: %T", l)
	}
	l2, err := c.LayerFromDir(ctx, src, "opt/app")
	must(err)
	d1, _ := l.Digest()
	d2, _ := l2.Digest()
	if d1 != d2 {
		t.Errorf("rebuilt dir layer differs: %s %s", d1, d2)
	}

	// A tarball goes in unchanged: its uncompressed form is the file.
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	must(tw.WriteHeader(&tar.Header{Name: "./etc/", Typeflag: tar.TypeDir, Mode: 0o755}))
	must(tw.WriteHeader(&tar.Header{Name: "./etc/hostname", Typeflag: tar.TypeReg, Mode: 0o644, Size: 5}))
	_, _ = tw.Write([]byte("node\n"))
	must(tw.Close())
	tarPath := filepath.Join(t.TempDir(), "rootfs.tar")
	must(os.WriteFile(tarPath, buf.Bytes(), 0o644))
	tl, err := c.LayerFromTarball(ctx, tarPath)
	must(err)
	ociCheckDigests(t, tl)
	diff, _ := tl.DiffID()
	if want := fmt.Sprintf("sha256:%x", sha256.Sum256(buf.Bytes())); diff.String() != want {
		t.Errorf("diffID %s, want %s", diff, want)
	}
	rc, _ := tl.Compressed()
	zr, err := gzip.NewReader(rc)
	must(err)
	b, _ := io.ReadAll(zr)
	rc.Close()
	if !bytes.Equal(b, buf.Bytes()) {
		t.Error("tarball layer does not decompress to the tarball")
	}
}

func TestNewImageAndIndex(t *testing.T) {
	l, err := LayerFromFiles(LayerFiles{"hello": {Content: []byte("hello\n")}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := v1.Config{Entrypoint: []string{"/hello"}, Env: []string{"A=b"}}
	var imgs []v1.Image
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := NewImage(arch, []v1.Layer{l}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(img); err != nil {
			t.Fatalf("%s: %v", arch, err)
		}
		cf, _ := img.ConfigFile()
		if cf.OS != "linux" || cf.Architecture != arch || cf.Config.Entrypoint[0] != "/hello" {
			t.Errorf("%s config: %+v", arch, cf)
		}
		if arch == "arm64" && cf.Variant != "v8" {
			t.Errorf("arm64 variant %q", cf.Variant)
		}
		mt, _ := img.MediaType()
		if mt != "application/vnd.oci.image.manifest.v1+json" {
			t.Errorf("media type %s", mt)
		}
		imgs = append(imgs, img)
	}
	again, _ := NewImage("amd64", []v1.Layer{l}, cfg)
	d1, _ := imgs[0].Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("same inputs, different image digests")
	}
	ii, err := NewIndex(imgs...)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(ii); err != nil {
		t.Fatal(err)
	}
	im, _ := ii.IndexManifest()
	var plats []string
	for _, d := range im.Manifests {
		plats = append(plats, d.Platform.String())
	}
	if got := strings.Join(plats, " "); got != "linux/amd64 linux/arm64/v8" {
		t.Errorf("platforms %q", got)
	}
	arm, err := ImageForPlatform(ii, "arm64")
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := arm.Digest(); d != im.Manifests[1].Digest {
		t.Errorf("ImageForPlatform picked %s", d)
	}
	if _, err := ImageForPlatform(ii, "s390x"); err == nil {
		t.Error("no error for a missing platform")
	}
}
