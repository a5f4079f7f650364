package images

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cnimatrix/cnimatrix/internal/calicodata"
	"github.com/cnimatrix/cnimatrix/internal/hostcmd"
)

// Calico built from its own source release, offline, the way flannel and
// Kubernetes are: the binaries upstream's images carry (calico-node with
// Felix linked against libbpf through cgo, mountns, the CNI plugin and its
// installer, kube-controllers and its probes), on Debian root filesystems
// with what upstream's images install (runit, both iptables backends,
// ipset, iproute2, conntrack). A cell that runs these says so
// (ImagesRebuiltFromSource): their PASS is the source's, not the released
// images'.

// CalicoSource is one Calico release's source archive and the libbpf source
// its Felix links against (calicodata finds them).
type CalicoSource = calicodata.Source

// calicoRecipe is bumped whenever the way the binaries or images are made
// changes in a way their inputs do not show.
const calicoRecipe = "calico-from-source/v1"

// CalicoComponents are the images built from a release, by the repository
// name upstream publishes them under (calico/<name>).
var CalicoComponents = []string{"node", "cni", "kube-controllers"}

// calicoBinaries are the main packages built, and whether each needs cgo.
var calicoBinaries = []struct {
	pkg, bin string
	cgo      bool
}{
	{"./node/cmd/calico-node", "calico-node", true},
	{"./node/cmd/mountns", "mountns", false},
	{"./cni-plugin/cmd/calico", "calico", false},
	{"./cni-plugin/cmd/install", "install", false},
	{"./kube-controllers/cmd/kube-controllers", "kube-controllers", false},
	{"./kube-controllers/cmd/check-status", "check-status", false},
	{"./kube-controllers/cmd/wrapper", "wrapper", false},
}

var calicoVersionRe = regexp.MustCompile(`^v\d+\.\d+\.\d+$`)

// calicoCC is the C compiler for calico-node's cgo: the host's gcc, or the
// cross compiler Debian's gcc-<triple> package installs (crossCC).
func calicoCC(arch string) (string, error) {
	if arch == runtime.GOARCH {
		return "gcc", nil
	}
	if cc, ok := crossCC[arch]; ok {
		return cc, nil
	}
	return "", fmt.Errorf("no C cross compiler known for %s", arch)
}

// CalicoBuildNeeds says what the host lacks to build calico-node for arch
// (a C compiler and libelf, zlib and libpcap for that arch), "" when nothing.
// hack/setup-host.sh installs all of it.
func CalicoBuildNeeds(arch string) string {
	cc, err := calicoCC(arch)
	if err != nil {
		return err.Error()
	}
	var missing []string
	if _, err := exec.LookPath(cc); err != nil {
		missing = append(missing, cc)
	}
	triple := strings.TrimSuffix(crossCC[arch], "-gcc")
	for _, lib := range []string{"libelf.so", "libz.so", "libpcap.so"} {
		if _, err := os.Stat(filepath.Join("/usr/lib", triple, lib)); err != nil {
			missing = append(missing, filepath.Join("/usr/lib", triple, lib))
		}
	}
	if len(missing) == 0 {
		return ""
	}
	gcc := "gcc"
	if arch != runtime.GOARCH {
		gcc = "gcc-" + triple
	}
	return fmt.Sprintf("building calico-node for linux/%s needs %s (Debian: %s libelf-dev:%s zlib1g-dev:%s libpcap-dev:%s; hack/setup-host.sh installs them)",
		arch, strings.Join(missing, ", "), gcc, arch, arch, arch)
}

// CalicoBinaries builds a release's binaries for linux/arch and returns the
// directory holding them (one file per calicoBinaries entry). It is cached
// by the two archives' contents, the arch, the C compiler and the Go
// version: a warm call runs nothing.
func (c *Cache) CalicoBinaries(ctx context.Context, src CalicoSource, arch string) (string, error) {
	if !calicoVersionRe.MatchString(src.Version) {
		return "", fmt.Errorf("build calico: invalid version %q", src.Version)
	}
	if !archRe.MatchString(arch) {
		return "", fmt.Errorf("build calico %s: invalid arch %q", src.Version, arch)
	}
	cc, err := calicoCC(arch)
	if err != nil {
		return "", fmt.Errorf("build calico %s for %s: %w", src.Version, arch, err)
	}
	srcSum, err := fileSum(src.Archive)
	if err != nil {
		return "", fmt.Errorf("build calico %s: %w", src.Version, err)
	}
	bpfSum, err := fileSum(src.Libbpf)
	if err != nil {
		return "", fmt.Errorf("build calico %s: %w", src.Version, err)
	}
	gover, err := goVersion()
	if err != nil {
		return "", err
	}
	key := Key(calicoRecipe, gover, src.Version, srcSum, bpfSum, arch, cc)
	return c.DoLocked(ctx, "go", "calico-"+src.Version+"-"+arch, key, func(ctx context.Context, out string) (err error) {
		if need := CalicoBuildNeeds(arch); need != "" {
			return errors.New(need)
		}
		done := c.Log.Phase(fmt.Sprintf("build calico %s linux/%s from source", src.Version, arch))
		defer func() { done(err) }()
		stop := c.heartbeat("build calico " + src.Version + " linux/" + arch)
		defer stop()
		// A fixed place (not the entry's temporary folder): cgo's flags name
		// the tree, so Go's build cache only hits when the path repeats.
		tree := filepath.Join(c.Dir, "work", "calico-"+src.Version+"-"+arch)
		if err := os.RemoveAll(tree); err != nil {
			return err
		}
		defer os.RemoveAll(tree)
		if err := untarGz(ctx, src.Archive, tree, 1); err != nil {
			return fmt.Errorf("unpack %s: %w", filepath.Base(src.Archive), err)
		}
		bpfDir := filepath.Join(tree, "felix", "bpf-gpl", "libbpf")
		if err := untarGz(ctx, src.Libbpf, bpfDir, 1); err != nil {
			return fmt.Errorf("unpack %s: %w", filepath.Base(src.Libbpf), err)
		}
		// Felix's cgo directives link felix/bpf-gpl/libbpf/src/<arch>/libbpf.a.
		mk := exec.CommandContext(ctx, "make", "-C", filepath.Join(bpfDir, "src"), "BUILD_STATIC_ONLY=1", "OBJDIR="+arch, "CC="+cc)
		if outb, err := mk.CombinedOutput(); err != nil {
			return fmt.Errorf("build libbpf for %s: %w\n%s", arch, err, hostcmd.LastLines(string(outb), 20))
		}
		ld := "-s -w -X github.com/projectcalico/calico/pkg/buildinfo.Version=" + src.Version
		for _, cgo := range []bool{true, false} {
			args := []string{"build", "-trimpath", "-ldflags=" + ld}
			var pkgs []string
			for _, b := range calicoBinaries {
				if b.cgo == cgo {
					pkgs = append(pkgs, b.pkg)
				}
			}
			if len(pkgs) == 1 {
				args = append(args, "-o", filepath.Join(out, path.Base(pkgs[0])))
			} else {
				args = append(args, "-o", out+string(filepath.Separator))
			}
			if _, err := c.runGo(ctx, tree, calicoBuildEnv(arch, cc, cgo), append(args, pkgs...)...); err != nil {
				return err
			}
		}
		for _, b := range calicoBinaries {
			if _, err := os.Stat(filepath.Join(out, b.bin)); err != nil {
				return fmt.Errorf("build calico %s: %s missing after the build: %w", src.Version, b.bin, err)
			}
		}
		return nil
	})
}

// calicoBuildEnv pins what decides the binaries; -mod=readonly makes the
// release's go.sum the only source of versions.
func calicoBuildEnv(arch, cc string, cgo bool) []string {
	env := []string{
		"GOOS=linux", "GOARCH=" + arch,
		"GOFLAGS=-mod=readonly -buildvcs=false", "GOWORK=off", "GOTOOLCHAIN=local",
		"GOAMD64=v1", "GOARM64=v8.0",
		"CGO_ENABLED=0",
	}
	if cgo {
		env = append(env, "CGO_ENABLED=1", "CC="+cc)
	}
	return env
}

// untarGz unpacks a .tar.gz into dir, dropping the first strip path
// elements of every name, refusing names that leave dir.
func untarGz(ctx context.Context, archive, dir string, strip int) error {
	return untar(ctx, walkTarGz, archive, dir, strip, true)
}

// untar unpacks the archive walk reads (walkTar, walkTarGz) into dir,
// dropping the first strip path elements of every name and refusing names
// that leave dir. Symbolic links are made only when links is set: an
// archive a user hands in could point one outside dir and have a later
// entry written through it.
func untar(ctx context.Context, walk func(context.Context, string, func(*tar.Header, io.Reader) error) error, archive, dir string, strip int, links bool) error {
	return walk(ctx, archive, func(h *tar.Header, r io.Reader) error {
		parts := strings.Split(strings.Trim(path.Clean("/"+h.Name), "/"), "/")
		if len(parts) <= strip || (len(parts) == 1 && parts[0] == "") {
			return nil
		}
		rel := filepath.Join(parts[strip:]...)
		if !filepath.IsLocal(rel) {
			return fmt.Errorf("entry %q leaves the tree", h.Name)
		}
		dst := filepath.Join(dir, rel)
		switch h.Typeflag {
		case tar.TypeDir:
			return os.MkdirAll(dst, 0o755)
		case tar.TypeReg:
			return writeFileFrom(dst, r, fs.FileMode(h.Mode).Perm())
		case tar.TypeSymlink:
			if !links {
				return nil
			}
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			return os.Symlink(h.Linkname, dst)
		}
		return nil
	})
}

// fileSum is the sha256 of a file's content, hex.
func fileSum(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", name, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func writeFileFrom(dst string, r io.Reader, mode fs.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode|0o200)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// calicoNodePackages are what upstream's node image installs that Felix
// and the startup scripts call, on top of the iptables base: ipset,
// runsvdir and sv (runit), which (start_runit), kmod, ps, and the shared
// libraries calico-node links (libelf, zlib, libpcap).
var calicoNodePackages = append(slices.Clone(iptablesBasePackages),
	"ipset", "runit", "debianutils", "kmod", "procps", "findutils", "libelf1", "zlib1g", "libpcap0.8")

// calicoImagePath is upstream's PATH plus where the CNI image keeps its
// binaries.
const calicoImagePath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// CalicoImages builds (or finds cached) the node, cni and kube-controllers
// images of a release for each arch, as multi-arch indexes keyed by
// component (CalicoComponents).
func (c *Cache) CalicoImages(ctx context.Context, src CalicoSource, arches []string) (map[string]v1.ImageIndex, error) {
	perComponent := map[string][]v1.Image{}
	for _, arch := range arches {
		bins, err := c.CalicoBinaries(ctx, src, arch)
		if err != nil {
			return nil, err
		}
		imgs, err := c.calicoArchImages(ctx, src, arch, bins)
		if err != nil {
			return nil, fmt.Errorf("calico %s images for %s: %w", src.Version, arch, err)
		}
		for comp, img := range imgs {
			perComponent[comp] = append(perComponent[comp], img)
		}
	}
	out := map[string]v1.ImageIndex{}
	for comp, imgs := range perComponent {
		idx, err := NewIndex(imgs...)
		if err != nil {
			return nil, fmt.Errorf("calico %s %s index: %w", src.Version, comp, err)
		}
		out[comp] = idx
	}
	return out, nil
}

func (c *Cache) calicoArchImages(ctx context.Context, src CalicoSource, arch, bins string) (map[string]v1.Image, error) {
	nodeFS, err := calicoNodeFilesystem(src.Archive)
	if err != nil {
		return nil, err
	}
	nodeFiles := iptablesBaseFiles()
	maps.Copy(nodeFiles, nodeFS)
	// bookworm's debianutils makes `which` an alternative, which the
	// extract variant does not set up; start_runit calls it.
	nodeFiles["usr/bin/which"] = LayerFile{Mode: fs.ModeSymlink, Target: "which.debianutils"}
	base, err := c.rootfsLayer(ctx, RootfsSpec{Arch: arch, Suite: DefaultDebianSuite, Variant: "extract", Packages: calicoNodePackages}, nodeFiles)
	if err != nil {
		return nil, fmt.Errorf("calico node base: %w", err)
	}
	label := func(title string) map[string]string {
		return map[string]string{
			"org.opencontainers.image.title":   title + " (cnimatrix: rebuilt from source)",
			"org.opencontainers.image.version": src.Version,
			"org.opencontainers.image.source":  "https://github.com/projectcalico/calico",
		}
	}
	layer := func(name string, files map[string]string, extra LayerFiles) (v1.Layer, error) {
		return c.binaryFilesLayer(ctx, "calico-"+name+"-"+src.Version+"-"+arch, bins, files, extra)
	}
	node, err := layer("node", map[string]string{"usr/bin/calico-node": "calico-node", "usr/bin/mountns": "mountns"}, nil)
	if err != nil {
		return nil, err
	}
	cni, err := layer("cni", map[string]string{"opt/cni/bin/calico": "calico", "opt/cni/bin/calico-ipam": "calico", "opt/cni/bin/install": "install"},
		LayerFiles{"opt/": {Mode: fs.ModeDir | 0o755}, "opt/cni/": {Mode: fs.ModeDir | 0o755}, "opt/cni/bin/": {Mode: fs.ModeDir | 0o755}})
	if err != nil {
		return nil, err
	}
	// kube-controllers runs as uid 999 and writes its status file, which
	// its probes (check-status) read.
	kc, err := layer("kube-controllers", map[string]string{"usr/bin/kube-controllers": "kube-controllers", "usr/bin/check-status": "check-status", "usr/bin/wrapper": "wrapper"},
		LayerFiles{
			"status/":            {Mode: fs.ModeDir | 0o755, UID: 999},
			"status/status.json": {Mode: 0o644, UID: 999},
			"profiles/":          {Mode: fs.ModeDir | 0o755, UID: 999},
			"profiles/mem.pprof": {Mode: 0o644, UID: 999},
			"profiles/cpu.pprof": {Mode: 0o644, UID: 999},
		})
	if err != nil {
		return nil, err
	}
	small, err := LayerFromFiles(workloadBaseFiles())
	if err != nil {
		return nil, err
	}
	imgs := map[string]v1.Image{}
	if imgs["node"], err = NewImage(arch, []v1.Layer{base, node}, v1.Config{
		Cmd: []string{"start_runit"}, Env: []string{calicoImagePath, "SVDIR=/etc/service/enabled"},
		WorkingDir: "/", Labels: label("Calico node"),
	}); err != nil {
		return nil, err
	}
	if imgs["cni"], err = NewImage(arch, []v1.Layer{small, cni}, v1.Config{
		Cmd: []string{"/opt/cni/bin/install"}, Env: []string{"PATH=/opt/cni/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		WorkingDir: "/opt/cni/bin", Labels: label("Calico Networking for CNI"),
	}); err != nil {
		return nil, err
	}
	if imgs["kube-controllers"], err = NewImage(arch, []v1.Layer{small, kc}, v1.Config{
		Entrypoint: []string{"/usr/bin/wrapper", "/usr/bin/kube-controllers"}, Env: []string{calicoImagePath},
		User: "999", WorkingDir: "/", Labels: label("Calico Kubernetes controllers"),
	}); err != nil {
		return nil, err
	}
	return imgs, nil
}

// binaryFilesLayer is a layer of extra plus, for each image path in files,
// the binary of that name from dir. It is cached by dir (a build cache
// entry, so it names its content) and the mapping.
func (c *Cache) binaryFilesLayer(ctx context.Context, name, dir string, files map[string]string, extra LayerFiles) (v1.Layer, error) {
	key := Key(ociLayerRecipe, calicoRecipe, dir, files, extra)
	return c.ociCachedLayer(ctx, name, key, func(ctx context.Context, w io.Writer) error {
		tw := tar.NewWriter(w)
		if err := ociWriteFiles(tw, extra, ""); err != nil {
			return err
		}
		for _, dst := range slices.Sorted(maps.Keys(files)) {
			src := filepath.Join(dir, files[dst])
			fi, err := os.Stat(src)
			if err != nil {
				return err
			}
			hdr := &tar.Header{Name: dst, Mode: 0o755, ModTime: ociEpoch, Format: tar.FormatPAX}
			if err := ociTarFile(tw, hdr, src, fi.Size()); err != nil {
				return err
			}
		}
		return tw.Close()
	})
}

// calicoNodeFilesystem reads node/filesystem of the source archive as
// upstream's Dockerfile copies it: etc/ to /etc, sbin/ to /usr/sbin (the
// startup scripts, start_runit among them), usr/ to /usr.
func calicoNodeFilesystem(archive string) (LayerFiles, error) {
	files := LayerFiles{}
	err := walkTarGz(context.Background(), archive, func(h *tar.Header, r io.Reader) error {
		name := strings.Trim(path.Clean("/"+h.Name), "/")
		_, rest, _ := strings.Cut(name, "/") // the archive's top folder
		rel, ok := strings.CutPrefix(rest, "node/filesystem/")
		if !ok || h.Typeflag != tar.TypeReg {
			return nil
		}
		switch {
		case strings.HasPrefix(rel, "etc/"), strings.HasPrefix(rel, "usr/"):
		case strings.HasPrefix(rel, "sbin/"):
			rel = "usr/" + rel
		default:
			return nil
		}
		data, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		files[rel] = LayerFile{Mode: fs.FileMode(h.Mode).Perm(), Content: data}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if _, ok := files["usr/sbin/start_runit"]; !ok {
		return nil, fmt.Errorf("%s: no node/filesystem/sbin/start_runit: not a Calico source release", archive)
	}
	return files, nil
}
