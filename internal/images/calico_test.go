package images

import (
	"archive/tar"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cnimatrix/cnimatrix/internal/calicodata"
	"github.com/cnimatrix/cnimatrix/internal/repo"
)

// TestCalicoImagesFromSource builds Calico v3.32.1 from its source release
// (the Calico data beside the tree) for amd64, and for arm64 as well with
// CNIMATRIX_QEMU=1 (cross-compiled), and checks what upstream's images
// hold: calico-node linked for the arch with the shared libraries it needs
// in the image, the startup scripts, the CNI plugin and installer, and
// kube-controllers as uid 999 with its status file.
func TestCalicoImagesFromSource(t *testing.T) {
	if testing.Short() || os.Getenv("CNIMATRIX_SLOW") != "1" {
		t.Skip("set CNIMATRIX_SLOW=1 (and no -short): builds Calico from source, minutes when cold")
	}
	root, err := repo.Root()
	if err != nil {
		t.Fatal(err)
	}
	d := calicodata.FindForTest(t, root)
	src, err := d.Source("v3.32.1")
	if err != nil {
		t.Fatal(err)
	}
	arches := []string{"amd64"}
	if os.Getenv("CNIMATRIX_QEMU") == "1" {
		arches = append(arches, "arm64")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	c := goBuildTestCache(t)
	t0 := time.Now()
	idx, err := c.CalicoImages(ctx, src, arches)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("calico %s images for %v in %s", src.Version, arches, time.Since(t0).Truncate(time.Millisecond))
	machine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	for _, arch := range arches {
		files := map[string]map[string]*tar.Header{}
		bodies := map[string][]byte{}
		for _, comp := range CalicoComponents {
			img, err := ImageForPlatform(idx[comp], arch)
			if err != nil {
				t.Fatalf("%s %s: %v", comp, arch, err)
			}
			files[comp] = imageFiles(t, img, func(name string) bool {
				return strings.HasPrefix(name, "usr/bin/calico-node") || name == "opt/cni/bin/calico" || name == "usr/bin/kube-controllers"
			}, bodies)
		}
		for comp, want := range map[string][]string{
			"node": {"usr/bin/calico-node", "usr/bin/mountns", "usr/sbin/start_runit", "etc/rc.local", "etc/service/available/felix/run",
				"usr/bin/runsvdir", "usr/bin/which", "usr/sbin/ipset", "usr/sbin/xtables-nft-multi", "usr/sbin/xtables-legacy-multi",
				"usr/sbin/iptables", "usr/sbin/conntrack"},
			"cni":              {"opt/cni/bin/calico", "opt/cni/bin/calico-ipam", "opt/cni/bin/install"},
			"kube-controllers": {"usr/bin/kube-controllers", "usr/bin/check-status", "usr/bin/wrapper", "status/status.json"},
		} {
			for _, f := range want {
				if files[comp][f] == nil {
					t.Errorf("%s %s image lacks /%s", comp, arch, f)
				}
			}
		}
		if h := files["kube-controllers"]["status/status.json"]; h != nil && h.Uid != 999 {
			t.Errorf("kube-controllers %s: status.json owned by %d, want 999", arch, h.Uid)
		}
		libdir := strings.TrimSuffix(crossCC[arch], "-gcc")
		for _, lib := range []string{"libelf.so.1", "libz.so.1", "libpcap.so.0.8"} {
			found := false
			for name := range files["node"] {
				found = found || (strings.Contains(name, libdir) && strings.HasSuffix(name, "/"+lib))
			}
			if !found {
				t.Errorf("node %s image lacks %s (calico-node links it)", arch, lib)
			}
		}
		for name, body := range bodies {
			f, err := elf.NewFile(strings.NewReader(string(body)))
			if err != nil {
				t.Errorf("%s %s: %v", arch, name, err)
				continue
			}
			if f.Machine != machine[arch] {
				t.Errorf("%s %s: ELF machine %s", arch, name, f.Machine)
			}
			f.Close()
		}
		if len(bodies) < 3 {
			t.Errorf("%s: read %d binaries, want calico-node, calico, kube-controllers", arch, len(bodies))
		}
		cfg, _ := mustConfig(t, idx["node"], arch)
		if strings.Join(cfg.Config.Cmd, " ") != "start_runit" || !strings.Contains(strings.Join(cfg.Config.Env, " "), "SVDIR=/etc/service/enabled") {
			t.Errorf("node %s config: cmd %v env %v", arch, cfg.Config.Cmd, cfg.Config.Env)
		}
		if kc, _ := mustConfig(t, idx["kube-controllers"], arch); kc.Config.User != "999" {
			t.Errorf("kube-controllers %s runs as %q, want 999", arch, kc.Config.User)
		}
	}
	// Warm: the same inputs are a cache hit, with the same digests.
	t1 := time.Now()
	again, err := c.CalicoImages(ctx, src, arches)
	if err != nil {
		t.Fatal(err)
	}
	for _, comp := range CalicoComponents {
		a, _ := idx[comp].Digest()
		b, _ := again[comp].Digest()
		if a != b {
			t.Errorf("%s: rebuilt with digest %s, first %s", comp, b, a)
		}
	}
	t.Logf("warm: %s", time.Since(t1).Truncate(time.Millisecond))
}

func mustConfig(t *testing.T, idx v1.ImageIndex, arch string) (*v1.ConfigFile, v1.Image) {
	t.Helper()
	img, err := ImageForPlatform(idx, arch)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return cfg, img
}

// imageFiles lists the entries of every layer of img by cleaned path, and
// keeps the contents of those keep accepts in bodies. It walks each layer
// with the builders' own walker (walkTarStream).
func imageFiles(t *testing.T, img v1.Image, keep func(string) bool, bodies map[string][]byte) map[string]*tar.Header {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*tar.Header{}
	for i, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		err = walkTarStream(context.Background(), fmt.Sprintf("layer %d", i), rc, func(h *tar.Header, r io.Reader) error {
			name := ociCleanPath(h.Name)
			out[name] = h
			if h.Typeflag != tar.TypeReg || !keep(name) {
				return nil
			}
			b, err := io.ReadAll(r)
			bodies[filepath.Base(filepath.Dir(name))+"/"+filepath.Base(name)] = b
			return err
		})
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}
