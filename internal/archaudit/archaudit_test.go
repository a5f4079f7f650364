package archaudit

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// bins holds real executables, compiled once for each arch by TestMain.
var bins = map[string][]byte{}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "archaudit-bins-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	err = buildBinaries(dir)
	code := 1
	if err != nil {
		fmt.Fprintln(os.Stderr, "build test binaries:", err)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildBinaries compiles a tiny static Go program for amd64 and arm64: the
// ELF files in the test images are what a real build produces. The build
// cache makes this take well under a second after the first time.
func buildBinaries(dir string) error {
	src := "package main\n\nimport \"os\"\n\nfunc main() { os.Stdout.WriteString(\"hello\\n\") }\n"
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module hello\n\ngo 1.22\n"), 0o644); err != nil {
		return err
	}
	for _, arch := range []string{"amd64", "arm64"} {
		out := filepath.Join(dir, "hello-"+arch)
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOFLAGS=", "GOWORK=off")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build GOARCH=%s: %v: %s", arch, err, b)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			return err
		}
		bins[arch] = b
	}
	return nil
}

// file is one tar entry of a test layer.
type file struct {
	name string
	data []byte
	mode int64
	link string // symlink target
	typ  byte
}

func exe(name, arch string) file { return file{name: name, data: bins[arch], mode: 0o755} }
func script(name, body string) file {
	return file{name: name, data: []byte(body), mode: 0o755}
}
func symlink(name, target string) file { return file{name: name, link: target, typ: tar.TypeSymlink} }
func whiteout(name string) file {
	return file{name: filepath.Join(filepath.Dir(name), ".wh."+filepath.Base(name)), mode: 0o644}
}

func layer(t testing.TB, files ...file) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, Typeflag: f.typ, ModTime: time.Unix(1700000000, 0)}
		switch {
		case f.typ == tar.TypeSymlink:
			h.Linkname, h.Mode = f.link, 0o777
		case f.typ == tar.TypeLink:
			h.Linkname, h.Mode = f.link, 0o755
		case f.typ == tar.TypeDir:
			h.Mode = 0o755
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

type imgSpec struct {
	arch       string
	entrypoint []string
	cmd        []string
	env        []string
	layers     []v1.Layer
}

func image(t testing.TB, s imgSpec) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, s.layers...)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", s.arch
	cfg.Config.Entrypoint, cfg.Config.Cmd, cfg.Config.Env = s.entrypoint, s.cmd, s.env
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// index makes a multi-platform index; the platform of each image is the one
// given, whatever the image holds (that is how a mislabeled index is made).
func index(t testing.TB, entries map[string]v1.Image) v1.ImageIndex {
	t.Helper()
	var adds []mutate.IndexAddendum
	for _, arch := range []string{"amd64", "arm64", "ppc64le"} {
		img, ok := entries[arch]
		if !ok {
			continue
		}
		p := &v1.Platform{OS: "linux", Architecture: arch}
		if arch == "arm64" {
			p.Variant = "v8"
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: p}})
	}
	return mutate.AppendManifests(empty.Index, adds...)
}

// testRegistry is go-containerregistry's registry served by httptest.
type testRegistry struct {
	srv  *httptest.Server
	host string
}

func newRegistry(t testing.TB) *testRegistry {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return &testRegistry{srv: srv, host: strings.TrimPrefix(srv.URL, "http://")}
}

// push stores obj as upstream reference up ("docker.io/calico/node:v3.2")
// under <host>/<upstream host>/..., the layout of the harness's registry.
func (r *testRegistry) push(t testing.TB, up string, obj any) {
	t.Helper()
	ref, err := name.ParseReference(r.host + "/" + up)
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
		t.Fatalf("push %s: %v", up, err)
	}
}

func (r *testRegistry) mirrors() map[string]string {
	return map[string]string{"*": r.srv.URL}
}

func audit(t *testing.T, imgs []ImageRef, arch string, opts Options) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t0 := time.Now()
	rep, err := Audit(ctx, imgs, arch, opts)
	d := time.Since(t0)
	if err != nil {
		t.Fatalf("Audit: %v", err)
	}
	if d > 10*time.Second {
		t.Errorf("Audit took %s, want seconds", d)
	}
	var tbl bytes.Buffer
	if err := rep.WriteTable(&tbl); err != nil {
		t.Fatal(err)
	}
	t.Logf("audit for %s took %s:\n%s", arch, d.Truncate(time.Millisecond), tbl.String())
	if len(rep.Findings) != len(imgs) {
		t.Fatalf("%d findings for %d images", len(rep.Findings), len(imgs))
	}
	return rep
}

func refs(rs ...string) []ImageRef {
	var out []ImageRef
	for _, r := range rs {
		out = append(out, ImageRef{Ref: r, Container: "c"})
	}
	return out
}

func wantKind(t *testing.T, f Finding, k Kind, reasonHas ...string) {
	t.Helper()
	if f.Kind != k {
		t.Errorf("%s: kind %s, want %s (reason: %s)", f.Image, f.Kind, k, f.Reason)
	}
	for _, s := range reasonHas {
		if !strings.Contains(f.Reason, s) {
			t.Errorf("%s: reason %q does not contain %q", f.Image, f.Reason, s)
		}
	}
}

// calicoNode is an image whose entrypoint and bin files are built for arch.
func calicoNode(t testing.TB, labelArch, binArch string) v1.Image {
	return image(t, imgSpec{
		arch:       labelArch,
		entrypoint: []string{"/usr/bin/calico-node"},
		layers: []v1.Layer{
			layer(t, exe("usr/bin/calico-node", binArch), exe("usr/sbin/ip", binArch)),
		},
	})
}

func TestMultiArchOK(t *testing.T) {
	reg := newRegistry(t)
	reg.push(t, "docker.io/calico/node:v3.26.1", index(t, map[string]v1.Image{
		"amd64": calicoNode(t, "amd64", "amd64"),
		"arm64": calicoNode(t, "arm64", "arm64"),
	}))
	for arch, machine := range map[string]string{"arm64": "aarch64", "amd64": "x86-64"} {
		rep := audit(t, refs("calico/node:v3.26.1"), arch, Options{Mirrors: reg.mirrors()})
		f := rep.Findings[0]
		wantKind(t, f, OK, "/usr/bin/calico-node is "+machine)
		if !rep.OK() {
			t.Errorf("report not OK")
		}
		if got := strings.Join(f.Platforms, ","); got != "linux/amd64,linux/arm64/v8" {
			t.Errorf("platforms %s", got)
		}
		if f.Entrypoint == nil || f.Entrypoint.Machine != machine || f.Scanned != 2 || len(f.Offending) != 0 {
			t.Errorf("finding %+v", f)
		}
		if f.Fetched != reg.host+"/docker.io/calico/node:v3.26.1" {
			t.Errorf("fetched %q", f.Fetched)
		}
	}
}

func TestNoVariant(t *testing.T) {
	reg := newRegistry(t)
	// calico 5963: the tag holds only the amd64 image.
	reg.push(t, "docker.io/calico/cni:v3.20.5", index(t, map[string]v1.Image{"amd64": calicoNode(t, "amd64", "amd64")}))
	// calico v3.1: a plain single-platform amd64 image.
	reg.push(t, "quay.io/calico/cni:v3.1.0", calicoNode(t, "amd64", "amd64"))
	rep := audit(t, refs("calico/cni:v3.20.5", "quay.io/calico/cni:v3.1.0"), "arm64", Options{Mirrors: reg.mirrors()})
	wantKind(t, rep.Findings[0], NoVariant, "no linux/arm64", "linux/amd64", "its linux/amd64 entrypoint /usr/bin/calico-node is x86-64")
	if f := rep.Findings[0]; f.Entrypoint == nil || len(f.Offending) != 1 || f.Offending[0].Path != "/usr/bin/calico-node" || f.Offending[0].Machine != "x86-64" {
		t.Errorf("no-variant index: entrypoint %+v, offending %+v", f.Entrypoint, f.Offending)
	}
	wantKind(t, rep.Findings[1], NoVariant, "single-platform image for linux/amd64", "entrypoint /usr/bin/calico-node is x86-64")
	if rep.OK() {
		t.Error("report OK")
	}
	// The same images are fine for amd64.
	rep = audit(t, refs("calico/cni:v3.20.5", "quay.io/calico/cni:v3.1.0"), "amd64", Options{Mirrors: reg.mirrors()})
	wantKind(t, rep.Findings[0], OK)
	wantKind(t, rep.Findings[1], OK)
}

func TestMislabeled(t *testing.T) {
	reg := newRegistry(t)
	// An index whose arm64 entry holds x86-64 binaries.
	reg.push(t, "docker.io/calico/node:v3.2.0", index(t, map[string]v1.Image{
		"amd64": calicoNode(t, "amd64", "amd64"),
		"arm64": calicoNode(t, "arm64", "amd64"),
	}))
	// calico 4256: a single image labelled arm64 holding an amd64 binary.
	reg.push(t, "quay.io/calico/cni:v3.16.5-arm64", calicoNode(t, "arm64", "amd64"))
	// The entrypoint is arm64, but the CNI binary it copies to the host is not.
	reg.push(t, "docker.io/calico/cni:v3.16.5", index(t, map[string]v1.Image{
		"arm64": image(t, imgSpec{arch: "arm64", entrypoint: []string{"/opt/cni/bin/install"}, layers: []v1.Layer{
			layer(t, exe("opt/cni/bin/install", "arm64"), exe("opt/cni/bin/calico", "amd64")),
		}}),
	}))
	// The amd64 image pushed again as the arm64 entry of an index.
	reg.push(t, "docker.io/calico/node:v3.2.1", index(t, map[string]v1.Image{"arm64": calicoNode(t, "amd64", "amd64")}))
	rep := audit(t, refs("calico/node:v3.2.0", "quay.io/calico/cni:v3.16.5-arm64", "calico/cni:v3.16.5", "calico/node:v3.2.1"), "arm64", Options{Mirrors: reg.mirrors()})
	wantKind(t, rep.Findings[0], Mislabeled, "index entry linux/arm64/v8: entrypoint /usr/bin/calico-node is x86-64, not aarch64; 1 other executables are not aarch64 either: /usr/sbin/ip (x86-64)")
	wantKind(t, rep.Findings[1], Mislabeled, "image linux/arm64: entrypoint /usr/bin/calico-node is x86-64, not aarch64")
	wantKind(t, rep.Findings[3], Mislabeled, "index entry linux/arm64/v8 (its config says linux/amd64): entrypoint /usr/bin/calico-node is x86-64")
	for _, f := range rep.Findings[:2] {
		if len(f.Offending) != 2 || f.Offending[0] != (Binary{Path: "/usr/bin/calico-node", Machine: "x86-64"}) {
			t.Errorf("offending %+v", f.Offending)
		}
	}
	wantKind(t, rep.Findings[2], Mislabeled, "index entry linux/arm64/v8: entrypoint /opt/cni/bin/install is aarch64, but 1 of 2 executables checked are not: /opt/cni/bin/calico (x86-64)")
}

func TestWhiteouts(t *testing.T) {
	reg := newRegistry(t)
	base := layer(t,
		exe("usr/bin/calico-node", "arm64"),
		exe("opt/cni/bin/calico", "amd64"),
		exe("usr/local/bin/tool", "amd64"),
		exe("usr/local/bin/other", "amd64"),
		exe("usr/sbin/replaced", "arm64"),
	)
	// Upper layers delete or replace what is below: the arm64 variant that
	// results holds no x86-64 binary but the one replaced in the top layer.
	fix := layer(t,
		whiteout("opt/cni/bin/calico"),
		exe("opt/cni/bin/calico-ipam", "arm64"),
		file{name: "usr/local/bin/.wh..wh..opq", mode: 0o644},
		exe("usr/local/bin/tool", "arm64"),
	)
	top := layer(t, exe("usr/sbin/replaced", "amd64"))
	reg.push(t, "docker.io/x/fixed:1", image(t, imgSpec{arch: "arm64", entrypoint: []string{"/usr/bin/calico-node"}, layers: []v1.Layer{base, fix}}))
	reg.push(t, "docker.io/x/broken:1", image(t, imgSpec{arch: "arm64", entrypoint: []string{"/usr/bin/calico-node"}, layers: []v1.Layer{base, fix, top}}))
	// The entrypoint deleted by an upper layer: the image cannot run it.
	reg.push(t, "docker.io/x/gone:1", image(t, imgSpec{arch: "arm64", entrypoint: []string{"/usr/bin/calico-node"}, layers: []v1.Layer{base, fix, layer(t, whiteout("usr/bin/calico-node"))}}))
	rep := audit(t, refs("x/fixed:1", "x/broken:1", "x/gone:1"), "arm64", Options{Mirrors: reg.mirrors()})
	wantKind(t, rep.Findings[0], OK, "entrypoint /usr/bin/calico-node is aarch64; 4 executables checked")
	wantKind(t, rep.Findings[1], Mislabeled, "/usr/sbin/replaced (x86-64)")
	if o := rep.Findings[1].Offending; len(o) != 1 {
		t.Errorf("offending %+v, want only /usr/sbin/replaced", o)
	}
	wantKind(t, rep.Findings[2], OK, "entrypoint /usr/bin/calico-node not found in the image")
}

func TestEntrypointResolution(t *testing.T) {
	reg := newRegistry(t)
	// calico-node's ENTRYPOINT is "start_runit", a bash script found in PATH;
	// /bin is a symbolic link to usr/bin (usrmerge) in the base layer. The
	// kernel runs bash, which here is x86-64.
	base := layer(t, symlink("bin", "usr/bin"), exe("usr/bin/bash", "amd64"), exe("usr/bin/calico-node", "arm64"))
	app := layer(t, script("usr/sbin/start_runit", "#!/bin/bash\nexec runsvdir /etc/service\n"), exe("opt/cni/bin/calico-ipam", "arm64"))
	reg.push(t, "docker.io/calico/node:v3.1.3", index(t, map[string]v1.Image{
		"arm64": image(t, imgSpec{arch: "arm64", entrypoint: []string{"start_runit"}, env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, layers: []v1.Layer{base, app}}),
	}))
	imgs := []ImageRef{
		{Ref: "calico/node:v3.1.3", Container: "calico-node", Workload: "DaemonSet kube-system/calico-node"},
		// A container command replaces the entrypoint (calico 5963's upgrade-ipam).
		{Ref: "calico/node:v3.1.3", Container: "upgrade-ipam", InitContainer: true, Command: []string{"/opt/cni/bin/calico-ipam", "-upgrade"}},
	}
	rep := audit(t, imgs, "arm64", Options{Mirrors: reg.mirrors()})
	f := rep.Findings[0]
	wantKind(t, f, Mislabeled, "entrypoint start_runit → /usr/sbin/start_runit (#!/bin/bash) → /bin/bash → /usr/bin/bash is x86-64, not aarch64")
	if f.Entrypoint == nil || f.Entrypoint.Via != "start_runit → /usr/sbin/start_runit (#!/bin/bash) → /bin/bash" {
		t.Errorf("entrypoint %+v", f.Entrypoint)
	}
	f = rep.Findings[1]
	wantKind(t, f, Mislabeled, "entrypoint /opt/cni/bin/calico-ipam is aarch64, but 1 of 3 executables checked are not: /usr/bin/bash (x86-64)")
	if !f.InitContainer || f.Container != "upgrade-ipam" {
		t.Errorf("finding %+v", f)
	}
}

// TestLinks resolves without a registry: a busybox-style hard link, a
// relative symbolic link with "..", a PATH lookup that only ends when every
// layer was read, and a program that is not there.
func TestLinks(t *testing.T) {
	img := image(t, imgSpec{arch: "arm64", entrypoint: []string{"/usr/sbin/tool"}, layers: []v1.Layer{
		layer(t, exe("bin/busybox", "arm64"), file{name: "bin/sh", typ: tar.TypeLink, link: "./bin/busybox"}),
		layer(t, symlink("usr/sbin/tool", "../../bin/busybox")),
	}})
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	s, err := scanImage(context.Background(), img, cfg, []string{"", "sh", "nope", "./rel"}, archMachines["arm64"], 200, false)
	if err != nil {
		t.Fatal(err)
	}
	for prog, want := range map[string]string{"": "/bin/busybox via /usr/sbin/tool", "sh": "/bin/busybox via sh → /bin/sh"} {
		ep := s.entrypoints[prog]
		if ep.binary == nil || ep.foreign || ep.binary.Path+" via "+ep.binary.Via != want {
			t.Errorf("%q: %+v, want %s", prog, ep, want)
		}
	}
	if ep := s.entrypoints["nope"]; ep.binary != nil || ep.note != "entrypoint nope not found in the image" {
		t.Errorf("nope: %+v", ep)
	}
	if ep := s.entrypoints["./rel"]; ep.binary != nil || !strings.Contains(ep.note, "not found") {
		t.Errorf("./rel: %+v", ep)
	}
	if s.scanned != 1 {
		t.Errorf("scanned %d, want 1 (links are not executables of their own)", s.scanned)
	}
}

// elfHeader is a hand-made ELF64 header: enough for the scan, which reads
// only e_ident, e_type and e_machine.
func elfHeader(m uint16) []byte {
	b := make([]byte, 64)
	copy(b, "\x7fELF")
	b[4], b[5], b[6] = 2, 1, 1 // 64-bit, little endian, version 1
	binary.LittleEndian.PutUint16(b[16:], 2)
	binary.LittleEndian.PutUint16(b[18:], m)
	return b
}

func TestScanStopsAtCap(t *testing.T) {
	reg := newRegistry(t)
	var many []file
	for i := range 300 {
		many = append(many, file{name: fmt.Sprintf("usr/bin/tool%03d", i), data: elfHeader(183), mode: 0o755})
	}
	// The entrypoint sits in the top layer: the lower layer, with an x86-64
	// binary, is never read once 50 executables agree.
	low := layer(t, exe("usr/local/bin/lower", "amd64"))
	reg.push(t, "docker.io/x/many:1", image(t, imgSpec{arch: "arm64", entrypoint: []string{"/usr/bin/tool000"}, layers: []v1.Layer{low, layer(t, many...)}}))
	rep := audit(t, refs("x/many:1"), "arm64", Options{Mirrors: reg.mirrors(), MaxExecutables: 50})
	f := rep.Findings[0]
	wantKind(t, f, OK)
	if f.Scanned != 50 {
		t.Errorf("scanned %d, want the cap 50", f.Scanned)
	}
}

func TestRegistryFailuresAreErrors(t *testing.T) {
	status := func(code int, hdr map[string]string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for k, v := range hdr {
				w.Header().Set(k, v)
			}
			w.WriteHeader(code)
		}))
		t.Cleanup(s.Close)
		return s
	}
	s500 := status(http.StatusInternalServerError, nil)
	s401 := status(http.StatusUnauthorized, map[string]string{"WWW-Authenticate": `Basic realm="private"`})
	// A port that was open a moment ago and is closed now.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	reg := newRegistry(t)

	imgs := refs("docker.io/calico/node:v3.2.0", "quay.io/calico/node:v3.2.0", "gcr.io/calico/node:v3.2.0", "ghcr.io/calico/node:missing")
	rep := audit(t, imgs, "arm64", Options{Mirrors: map[string]string{
		"docker.io": s500.URL, "quay.io": s401.URL, "gcr.io": closed, "ghcr.io": reg.srv.URL,
	}})
	wantKind(t, rep.Findings[0], Error, "500")
	wantKind(t, rep.Findings[1], Error, "401")
	wantKind(t, rep.Findings[2], Error, "cannot reach registry", "connection refused")
	wantKind(t, rep.Findings[3], Error, "404")
	if rep.OK() || rep.Count(Error) != 4 {
		t.Errorf("report %s", rep.Summary())
	}
}

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		imgs []ImageRef
		arch string
		mir  map[string]string
		want string
	}{
		{"bad reference", []ImageRef{{Ref: "calico/node:v3.2.0"}, {Ref: "Calico/Node:has space", Container: "cni", Workload: "DaemonSet kube-system/calico-node"}}, "arm64", nil, `image "Calico/Node:has space" (DaemonSet kube-system/calico-node, container cni): not a valid image reference`},
		{"empty reference", []ImageRef{{Ref: " "}}, "arm64", nil, "empty image reference"},
		{"unknown arch", refs("nginx"), "aarch64", nil, `unknown arch "aarch64" (known: 386, amd64, arm, arm64, ppc64le, riscv64, s390x)`},
		{"bad mirror", refs("nginx"), "arm64", map[string]string{"docker.io": "127.0.0.1:5000"}, "not an http:// or https:// URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := Audit(ctx, tc.imgs, tc.arch, Options{Mirrors: tc.mir})
			var ie *InputError
			if !errors.As(err, &ie) || rep != nil {
				t.Fatalf("got %v, %v; want an InputError", rep, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

const calicoManifest = `# calico-ish, trimmed
apiVersion: v1
kind: ConfigMap
metadata: {name: calico-config, namespace: kube-system}
data: {veth_mtu: "1440"}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: calico-node, namespace: kube-system}
spec:
  selector: {matchLabels: {k8s-app: calico-node}}
  template:
    metadata: {labels: {k8s-app: calico-node}}
    spec:
      initContainers:
      - name: upgrade-ipam
        image: calico/cni:v3.20.5
        command: ["/opt/cni/bin/calico-ipam", "-upgrade"]
      - name: install-cni
        image: calico/cni:v3.20.5
        command: ["/opt/cni/bin/install"]
      containers:
      - name: calico-node
        image: docker.io/calico/node:v3.20.5
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: calico-kube-controllers, namespace: kube-system}
spec:
  template:
    spec:
      containers:
      - name: calico-kube-controllers
        image: quay.io/calico/kube-controllers:v3.20.5
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: cleanup}
spec:
  schedule: "@daily"
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - {name: cleanup, image: "docker.io/calico/ctl@sha256:0000000000000000000000000000000000000000000000000000000000000000"}
---
apiVersion: v1
kind: Pod
metadata: {name: probe, namespace: default}
spec:
  containers:
  - {name: probe, image: "registry.k8s.io/pause:3.10.2"}
`

func TestManifestImages(t *testing.T) {
	imgs, err := ManifestImages([]byte(calicoManifest))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, im := range imgs {
		got = append(got, fmt.Sprintf("%s|%s|%v|%s|%s", im.Workload, im.Container, im.InitContainer, im.Ref, strings.Join(im.Command, " ")))
	}
	want := []string{
		"DaemonSet kube-system/calico-node|upgrade-ipam|true|calico/cni:v3.20.5|/opt/cni/bin/calico-ipam -upgrade",
		"DaemonSet kube-system/calico-node|install-cni|true|calico/cni:v3.20.5|/opt/cni/bin/install",
		"DaemonSet kube-system/calico-node|calico-node|false|docker.io/calico/node:v3.20.5|",
		"Deployment kube-system/calico-kube-controllers|calico-kube-controllers|false|quay.io/calico/kube-controllers:v3.20.5|",
		"CronJob cleanup|cleanup|false|docker.io/calico/ctl@sha256:0000000000000000000000000000000000000000000000000000000000000000|",
		"Pod default/probe|probe|false|registry.k8s.io/pause:3.10.2|",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("images:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	for _, tc := range []struct{ name, yaml, want string }{
		{"bad yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: [unclosed\n", "document 2"},
		{"not a manifest", "just some text\n", "document 1"},
		{"bad image", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: c, image: 'UPPER/case:tag'}\n", `Pod p: container "c": image "UPPER/case:tag" is not a valid image reference`},
		{"no image", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  initContainers:\n  - {name: c}\n", `Pod p: init container "c" has no image`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ManifestImages([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestManifestAudit runs the whole path on a manifest: the calico 5963 case
// (the cni tag without arm64, used by two init containers) and calico
// 4227/4692 (kube-controllers multi-arch on docker.io, amd64-only on quay.io).
func TestManifestAudit(t *testing.T) {
	reg := newRegistry(t)
	kc := func(arch string) v1.Image {
		return image(t, imgSpec{arch: arch, entrypoint: []string{"/usr/bin/kube-controllers"}, layers: []v1.Layer{layer(t, exe("usr/bin/kube-controllers", arch))}})
	}
	reg.push(t, "docker.io/calico/cni:v3.20.5", index(t, map[string]v1.Image{"amd64": calicoNode(t, "amd64", "amd64")}))
	reg.push(t, "docker.io/calico/node:v3.20.5", index(t, map[string]v1.Image{"amd64": calicoNode(t, "amd64", "amd64"), "arm64": calicoNode(t, "arm64", "arm64")}))
	reg.push(t, "docker.io/calico/kube-controllers:v3.20.5", index(t, map[string]v1.Image{"amd64": kc("amd64"), "arm64": kc("arm64")}))
	reg.push(t, "quay.io/calico/kube-controllers:v3.20.5", kc("amd64"))
	reg.push(t, "registry.k8s.io/pause:3.10.2", index(t, map[string]v1.Image{"amd64": kc("amd64"), "arm64": kc("arm64")}))

	imgs, err := ManifestImages([]byte(calicoManifest))
	if err != nil {
		t.Fatal(err)
	}
	imgs = append(imgs, ImageRef{Ref: "docker.io/calico/kube-controllers:v3.20.5", Container: "same-tag-on-docker.io"})
	rep := audit(t, imgs, "arm64", Options{Mirrors: reg.mirrors()})
	kinds := map[string]Kind{}
	for _, f := range rep.Findings {
		kinds[f.Container] = f.Kind
	}
	want := map[string]Kind{
		"upgrade-ipam": NoVariant, "install-cni": NoVariant, "calico-node": OK,
		"calico-kube-controllers": NoVariant, "same-tag-on-docker.io": OK,
		"cleanup": Error, // the digest is not in the registry
		"probe":   OK,
	}
	for c, k := range want {
		if kinds[c] != k {
			t.Errorf("container %s: %s, want %s", c, kinds[c], k)
		}
	}
	j, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(j, &back); err != nil || len(back.Findings) != len(rep.Findings) || back.Findings[0].Kind != NoVariant {
		t.Errorf("JSON round trip: %v %s", err, j)
	}
	if got := rep.Summary(); got != "linux/arm64: 7 images: 3 ok, 3 no-variant, 0 mislabeled, 1 error" {
		t.Errorf("summary %q", got)
	}
}

func TestParseHeader(t *testing.T) {
	for arch, want := range map[string]string{"amd64": "x86-64", "arm64": "aarch64"} {
		h := parseHeader(bins[arch][:headerPrefix])
		if h == nil || !h.isELF || !h.exec || h.machine.name != want || !h.machine.same(archMachines[arch]) {
			t.Errorf("%s binary: header %+v", arch, h)
		}
	}
	be := elfHeader(0)
	be[5] = 2 // big endian
	binary.BigEndian.PutUint16(be[16:], 2)
	binary.BigEndian.PutUint16(be[18:], 22)
	if h := parseHeader(be); h == nil || h.machine.name != "s390x" {
		t.Errorf("s390x header: %+v", h)
	}
	ppc64 := elfHeader(0)
	ppc64[5] = 2
	binary.BigEndian.PutUint16(ppc64[16:], 2)
	binary.BigEndian.PutUint16(ppc64[18:], 21)
	if h := parseHeader(ppc64); h == nil || h.machine.name != "ppc64" {
		t.Errorf("ppc64 header: %+v", h)
	}
	if h := parseHeader([]byte("#!/usr/bin/env bash\necho\n")); h == nil || h.shebang != "/usr/bin/env bash" {
		t.Errorf("script header: %+v", h)
	}
	if h := parseHeader([]byte("\x7fELF")); h != nil {
		t.Errorf("truncated header parsed: %+v", h)
	}
}
