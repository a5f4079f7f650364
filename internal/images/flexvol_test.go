package images

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cnimatrix/cnimatrix/internal/logx"
)

func flexvolTestCache(t *testing.T) *Cache {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the flexvol fixture program")
	}
	c, err := NewCache(t.TempDir(), logx.New(tlogWriter{t}, testing.Verbose()))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The program does what the fixture's init container promises: copy itself
// into the hostPath and exit 0; then answer the kubelet as a driver.
func TestFlexvolProgram(t *testing.T) {
	c := flexvolTestCache(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir, err := c.Flexvol(ctx, runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "flexvol")
	dest := filepath.Join(t.TempDir(), "cnimatrix~flexvol")
	out, err := exec.Command(bin, "install", "-dest", dest).CombinedOutput()
	if err != nil {
		t.Fatalf("install: %v: %s", err, out)
	}
	if want := "flexvol " + FlexvolVersion + " (linux/" + runtime.GOARCH + "): installed " + filepath.Join(dest, "flexvol"); !strings.HasPrefix(string(out), want) {
		t.Errorf("install said %q, want it to start with %q", out, want)
	}
	installed := filepath.Join(dest, "flexvol")
	a, _ := os.ReadFile(bin)
	b, err := os.ReadFile(installed)
	if err != nil || !bytes.Equal(a, b) {
		t.Fatalf("installed driver differs from the program (%v)", err)
	}
	if fi, _ := os.Stat(installed); fi.Mode().Perm() != 0o755 {
		t.Errorf("installed driver mode %s, want 0755", fi.Mode())
	}
	if left, _ := filepath.Glob(filepath.Join(dest, ".*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}

	out, err = exec.Command(installed, "init").Output()
	var st struct {
		Status       string
		Capabilities map[string]bool
	}
	if err != nil || json.Unmarshal(out, &st) != nil || st.Status != "Success" || st.Capabilities["attach"] {
		t.Errorf("driver init: %v %q", err, out)
	}
	out, err = exec.Command(installed, "mount", "/x", "{}").Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), `"Not supported"`) {
		t.Errorf("driver mount: %v %q, want exit 1 and Not supported", err, out)
	}

	// A destination that cannot be a directory: a clear error, exit 1.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(bin, "install", "-dest", file).CombinedOutput()
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "flexvol install: create "+file) {
		t.Errorf("install into a file: %v %q", err, out)
	}
}

// Each fixture holds exactly what its name says, in the index and in the
// binaries' ELF headers; a second call is a cache hit with equal digests.
func TestFlexvolImages(t *testing.T) {
	c := flexvolTestCache(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	got, err := c.FlexvolImages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]elf.Machine{ // ref -> platform -> machine of the binary
		FlexvolGood:       {"linux/amd64": elf.EM_X86_64, "linux/arm64/v8": elf.EM_AARCH64},
		FlexvolAmd64Only:  {"linux/amd64": elf.EM_X86_64},
		FlexvolMislabeled: {"linux/amd64": elf.EM_X86_64, "linux/arm64/v8": elf.EM_X86_64},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d fixtures, want %d", len(got), len(want))
	}
	digests := map[string]v1.Hash{}
	for ref, platforms := range want {
		idx := got[ref]
		if idx == nil {
			t.Fatalf("no fixture %s", ref)
		}
		digests[ref], _ = idx.Digest()
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]elf.Machine{}
		for _, d := range im.Manifests {
			p := d.Platform.OS + "/" + d.Platform.Architecture
			if d.Platform.Variant != "" {
				p += "/" + d.Platform.Variant
			}
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			// The config claims what the index claims, even for the
			// mislabeled entry: only the binary tells the truth.
			if cf.Architecture != d.Platform.Architecture {
				t.Errorf("%s %s: config says %s", ref, p, cf.Architecture)
			}
			if ep := strings.Join(cf.Config.Entrypoint, " "); ep != FlexvolEntrypoint+" install" {
				t.Errorf("%s %s: entrypoint %q", ref, p, ep)
			}
			seen[p] = entrypointMachine(t, img)
		}
		if len(seen) != len(platforms) {
			t.Errorf("%s: platforms %v, want %v", ref, seen, platforms)
		}
		for p, m := range platforms {
			if seen[p] != m {
				t.Errorf("%s %s: binary is %s, want %s", ref, p, seen[p], m)
			}
		}
	}

	t0 := time.Now()
	again, err := c.FlexvolImages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("warm call took %s", d)
	}
	for ref, idx := range again {
		if d, _ := idx.Digest(); d != digests[ref] {
			t.Errorf("%s: digest %s on the second call, was %s", ref, d, digests[ref])
		}
	}
	for _, ref := range FixtureRefs() {
		if FixtureRef(ref) != ref || FixtureRef(strings.TrimPrefix(ref, "docker.io/")) != ref {
			t.Errorf("FixtureRef(%s) = %q", ref, FixtureRef(ref))
		}
	}
	if FixtureRef(FlannelImageRef) != "" || FixtureRef("::not a ref") != "" {
		t.Error("FixtureRef names a fixture for a non-fixture")
	}
}

// entrypointMachine reads the ELF machine of the entrypoint in img's layer.
func entrypointMachine(t *testing.T, img v1.Image) elf.Machine {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %v (%d)", err, len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			t.Fatalf("no %s in the layer", FlexvolEntrypoint)
		}
		if err != nil {
			t.Fatal(err)
		}
		if "/"+strings.TrimPrefix(h.Name, "./") != FlexvolEntrypoint {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		f, err := elf.NewFile(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		return f.Machine
	}
}
