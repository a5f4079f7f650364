package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
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

	"github.com/cnimatrix/cnimatrix/internal/archaudit"
)

// auditELF is an ELF64 header with e_machine m: the audit reads nothing
// past it (internal/archaudit's tests use compiled binaries).
func auditELF(m uint16) []byte {
	b := make([]byte, 64)
	copy(b, "\x7fELF")
	b[4], b[5], b[6] = 2, 1, 1
	binary.LittleEndian.PutUint16(b[16:], 2)
	binary.LittleEndian.PutUint16(b[18:], m)
	return b
}

// auditImage is a single-platform image for arch whose entrypoint
// /usr/bin/app is an ELF of machine m.
func auditImage(t *testing.T, arch string, m uint16) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	data := auditELF(m)
	if err := tw.WriteHeader(&tar.Header{Name: "usr/bin/app", Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(data)
	tw.Close()
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := img.ConfigFile()
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture, cfg.Config.Entrypoint = "linux", arch, []string{"/usr/bin/app"}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func runAudit(t *testing.T, stdin string, args ...string) (int, string, error) {
	t.Helper()
	root := newRoot()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(append([]string{"audit"}, args...))
	t0 := time.Now()
	err := root.ExecuteContext(context.Background())
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("audit %v took %s", args, d)
	}
	return exitCode(err), out.String(), err
}

const auditManifest = `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: cni, namespace: kube-system}
spec:
  template:
    spec:
      initContainers:
      - {name: install, image: "quay.io/x/install:v1"}
      containers:
      - {name: agent, image: "x/agent:v1"}
`

func TestAuditCommand(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	push := func(up string, obj v1.ImageIndex) {
		ref, err := name.ParseReference(host + "/" + up)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.WriteIndex(ref, obj); err != nil {
			t.Fatal(err)
		}
	}
	both := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: auditImage(t, "amd64", 62), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: auditImage(t, "arm64", 183), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
	amd64Only := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: auditImage(t, "amd64", 62), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
	push("docker.io/x/agent:v1", both)
	push("quay.io/x/install:v1", amd64Only)

	dir := t.TempDir()
	manifest := filepath.Join(dir, "cni.yaml")
	if err := os.WriteFile(manifest, []byte(auditManifest), 0o644); err != nil {
		t.Fatal(err)
	}
	mirror := "--mirror=*=" + srv.URL

	// amd64: everything is there.
	code, out, err := runAudit(t, "", manifest, "--arch", "amd64", mirror)
	if code != exitOK || !strings.Contains(out, "linux/amd64: 2 images: 2 ok") {
		t.Errorf("amd64: exit %d (%v)\n%s", code, err, out)
	}

	// arm64, manifest from a URL, JSON: the init container's image has no arm64.
	files := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/cni.yaml" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, auditManifest)
	}))
	defer files.Close()
	code, out, err = runAudit(t, "", files.URL+"/cni.yaml", "--json", mirror)
	if code != exitFailed {
		t.Errorf("arm64: exit %d (%v), want %d\n%s", code, err, exitFailed, out)
	}
	var rep archaudit.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("JSON output: %v\n%s", err, out)
	}
	if len(rep.Findings) != 2 || rep.Findings[0].Kind != archaudit.NoVariant || !rep.Findings[0].InitContainer || rep.Findings[1].Kind != archaudit.OK {
		t.Errorf("findings %+v", rep.Findings)
	}

	// The manifest on standard input; the registry unreachable: an error
	// finding, exit 1, not bad input.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	code, out, err = runAudit(t, auditManifest, "-", "--mirror=*="+closed)
	if code != exitFailed || !strings.Contains(out, "error") || !strings.Contains(out, "cannot reach registry") {
		t.Errorf("unreachable: exit %d (%v)\n%s", code, err, out)
	}

	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"not yaml", "kind: [unclosed\n", []string{"-"}, "document 1"},
		{"bad image", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: c, image: 'Bad Ref'}\n", []string{"-"}, `image "Bad Ref" is not a valid image reference`},
		{"no workloads", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n", []string{"-"}, "no Pod, DaemonSet"},
		{"missing file", "", []string{filepath.Join(dir, "nope.yaml")}, "no such file"},
		{"URL 404", "", []string{files.URL + "/nope.yaml"}, "404 Not Found"},
		{"bad mirror", auditManifest, []string{"-", "--mirror", "docker.io"}, "want UPSTREAM=URL"},
		{"bad mirror URL", auditManifest, []string{"-", "--mirror", "docker.io=127.0.0.1:5000"}, "not an http:// or https:// URL"},
		{"unknown arch", auditManifest, []string{"-", "--arch", "sparc"}, `unknown arch "sparc"`},
		{"two manifests", "", []string{"a.yaml", "b.yaml"}, "audit takes one manifest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, err := runAudit(t, tc.stdin, tc.args...)
			if code != exitBadInput || err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("exit %d, error %v; want %d and %q", code, err, exitBadInput, tc.want)
			}
		})
	}
}
