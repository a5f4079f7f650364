package images

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/hostcmd"
	"github.com/cnimatrix/cnimatrix/internal/repo"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/mod/modfile"
)

// NodeImageRepo is the Docker repository of the kind node images built here.
const NodeImageRepo = "cnimatrix/kind-node"

// nodeImageRecipe is bumped whenever NodeImage changes what it produces.
const nodeImageRecipe = "kind-node/v1"

// nodeImageLabel marks node images in the Docker engine, so leftovers can be
// found (the value of cluster.Label, which this package does not import).
const nodeImageLabel = "io.cnimatrix.run"

// nodeImagePackages are the Debian packages of a node: what kind's base
// image installs (images/base/Dockerfile) less the network-storage and
// fuse-overlayfs ones nothing here uses, plus Debian's runc and CNI plugins
// where kind builds its own.
var nodeImagePackages = []string{
	"systemd",
	"conntrack", "iptables", "nftables", "iproute2", "ethtool", "util-linux", "mount", "kmod",
	"libseccomp2", "pigz",
	"e2fsprogs",
	"bash", "ca-certificates", "curl", "jq", "procps",
	"runc", "containernetworking-plugins",
}

// nodeImageInputs is everything a node image is made from; its Key names the
// image, so a change to any input makes a new image.
type nodeImageInputs struct {
	Recipe         string
	KubeVersion    string
	Arch           string
	Rootfs         string // cached tarball path (carries its own key)
	Containerd     string // cache dirs, each named with its key
	HostContainerd string // runs the preload; its version writes the metadata db
	Crictl         string
	Kube           string
	Etcd           string
	CoreDNS        string
	Pause          string
	ProxyBase      string // digest of the kube-proxy image's iptables layer
	Images         []string
	KindFiles      string // kind's images/base/files in the module cache
	Config         string // our containerd config
}

// NodeImage builds a kind node image of Kubernetes k8sVersion for linux/arch
// entirely offline and loads it into the local Docker engine. The image
// holds a Debian bookworm root filesystem prepared as kind's base image is,
// our containerd, crictl, kubeadm, kubelet and kubectl, and the control-plane
// images kubeadm asks for, preloaded under exactly its tags. The reference
// is cnimatrix/kind-node:<k8sVersion>-<key of all inputs>. When the image is
// already in Docker (same image ID) nothing is built or loaded.
func (c *Cache) NodeImage(ctx context.Context, k8sVersion, arch string) (ref string, err error) {
	ref, dir, err := c.nodeImageDir(ctx, k8sVersion, arch)
	if err != nil {
		return "", err
	}
	if err := c.loadNodeImage(ctx, dir, ref); err != nil {
		return "", fmt.Errorf("node image %s %s: %w", k8sVersion, arch, err)
	}
	return ref, nil
}

// NodeImageContent is the image NodeImage loads into Docker (built first
// when it is not cached), for a test's registry standing in for docker.io's
// kindest/node.
func (c *Cache) NodeImageContent(ctx context.Context, k8sVersion, arch string) (v1.Image, error) {
	_, dir, err := c.nodeImageDir(ctx, k8sVersion, arch)
	if err != nil {
		return nil, err
	}
	img, _, err := assembleNodeImage(dir)
	return img, err
}

// nodeImageDir builds the node image's layer (or finds it cached) and says
// its reference and cache folder.
func (c *Cache) nodeImageDir(ctx context.Context, k8sVersion, arch string) (ref, dir string, err error) {
	if arch == "" {
		arch = runtime.GOARCH
	}
	in, err := c.nodeImageInputs(ctx, k8sVersion, arch)
	if err != nil {
		return "", "", fmt.Errorf("node image %s %s: %w", k8sVersion, arch, err)
	}
	key := Key(in)
	ref = fmt.Sprintf("%s:%s-%s", NodeImageRepo, k8sVersion, key)
	dir, err = c.DoLocked(ctx, "nodeimage", "kind-node-"+k8sVersion+"-"+arch, key, func(ctx context.Context, dir string) error {
		done := c.Log.Phase(fmt.Sprintf("build kind node image %s %s", k8sVersion, arch))
		err := c.buildNodeImage(ctx, in, ref, dir)
		done(err)
		return err
	})
	if err != nil {
		return "", "", fmt.Errorf("node image %s %s: %w", k8sVersion, arch, err)
	}
	return ref, dir, nil
}

// nodeImageInputs builds (or finds cached) every part of the image. All of
// them are cached by content, so a warm call costs a few stats and one
// `kubeadm config images list`.
func (c *Cache) nodeImageInputs(ctx context.Context, k8sVersion, arch string) (*nodeImageInputs, error) {
	in := &nodeImageInputs{Recipe: nodeImageRecipe, KubeVersion: k8sVersion, Arch: arch}
	kb, err := c.Kubernetes(ctx, k8sVersion, arch)
	if err != nil {
		return nil, err
	}
	in.Kube = kb.Dir
	if in.Images, err = kb.ControlPlaneImages(ctx); err != nil {
		return nil, err
	}
	imgs, err := parseControlPlaneImages(in.Images)
	if err != nil {
		return nil, err
	}
	if in.Rootfs, err = c.DebianRootfs(ctx, RootfsSpec{Arch: arch, Suite: "bookworm", Variant: "minbase", Packages: nodeImagePackages}); err != nil {
		return nil, err
	}
	if in.Containerd, err = c.Containerd(ctx, arch); err != nil {
		return nil, err
	}
	in.HostContainerd = in.Containerd
	if arch != runtime.GOARCH {
		if in.HostContainerd, err = c.Containerd(ctx, runtime.GOARCH); err != nil {
			return nil, err
		}
	}
	if in.Crictl, err = c.Crictl(ctx, arch); err != nil {
		return nil, err
	}
	if in.Etcd, err = c.Etcd(ctx, imgs["etcd"].TagStr(), arch); err != nil {
		return nil, err
	}
	if in.CoreDNS, err = c.CoreDNS(ctx, imgs["coredns"].TagStr(), arch); err != nil {
		return nil, err
	}
	if in.Pause, err = c.Pause(ctx, arch); err != nil {
		return nil, err
	}
	base, err := c.IptablesBaseLayer(ctx, arch)
	if err != nil {
		return nil, err
	}
	d, err := base.Digest()
	if err != nil {
		return nil, err
	}
	in.ProxyBase = d.String()
	if in.KindFiles, err = c.kindBaseFiles(ctx); err != nil {
		return nil, err
	}
	in.Config = nodeContainerdConfig(imgs["pause"].String())
	return in, nil
}

// parseControlPlaneImages indexes kubeadm's image list by component:
// kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, etcd,
// coredns, pause. All of them must be there.
func parseControlPlaneImages(list []string) (map[string]name.Tag, error) {
	out := map[string]name.Tag{}
	for _, s := range list {
		t, err := name.NewTag(s, name.StrictValidation)
		if err != nil {
			return nil, fmt.Errorf("kubeadm image %q: %w", s, err)
		}
		out[path.Base(t.RepositoryStr())] = t
	}
	for _, want := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "etcd", "coredns", "pause"} {
		if _, ok := out[want]; !ok {
			return nil, fmt.Errorf("kubeadm lists no %s image (got %s)", want, strings.Join(list, ", "))
		}
	}
	return out, nil
}

// nodeContainerdConfig is the node's /etc/containerd/config.toml, in
// containerd 2's native version 3. It follows kind's (images/base/files/etc/
// containerd/config.toml) where it matters to kind: the base runtime spec
// (kind's product_uuid hook), the systemd cgroup driver, and the literal
// lines `snapshotter = "overlayfs"` and `restrict_oom_score_adj = false`
// that kind's entrypoint rewrites with sed for zfs/fuse and rootless hosts.
// Hosts without CAP_SYS_RESOURCE get restrict_oom_score_adj through the
// kind provider's containerdConfigPatches, so the image stays host-neutral.
func nodeContainerdConfig(sandboxImage string) string {
	return `# cnimatrix kind node: containerd 2 configuration (version 3)
version = 3

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  # the images are preloaded packed; keep disk use down once unpacked
  discard_unpacked_layers = true
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "` + sandboxImage + `"
  [plugins."io.containerd.cri.v1.images".registry]
    # hosts.toml files of registry mirrors (mounted by the kind provider)
    config_path = "/etc/containerd/certs.d"

[plugins."io.containerd.cri.v1.runtime"]
  # nodes are containers; the hugetlb controller may be missing
  tolerate_missing_hugetlb_controller = true
  restrict_oom_score_adj = false
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      base_runtime_spec = "/etc/containerd/cri-base.json"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        SystemdCgroup = true
    # the runtime class name Kubernetes' RuntimeClass e2e tests use
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.test-handler]
      runtime_type = "io.containerd.runc.v2"
      base_runtime_spec = "/etc/containerd/cri-base.json"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.test-handler.options]
        SystemdCgroup = true
`
}

// nodeStorageManifest is /kind/manifests/default-storage.yaml. kind's newer
// images ship local-path-provisioner there, whose images are not available
// offline; a missing file makes kind warn and apply the same legacy class.
// This is that class: kind runs kube-controller-manager with
// enable-hostpath-provisioner, which serves kubernetes.io/host-path.
const nodeStorageManifest = `# host-path based default storage class (no provisioner image needed)
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/host-path
`

// kindBaseFiles locates kind's images/base/files in the Go module cache for
// the kind version this binary was built with, downloading the module if
// the cache lacks it. Those files (entrypoint, systemd units, /kind/bin
// scripts) are kind's runtime contract with its node images, so they are
// taken from kind itself rather than kept here.
func (c *Cache) kindBaseFiles(ctx context.Context) (string, error) {
	version, err := kindModuleVersion()
	if err != nil {
		return "", err
	}
	rel := filepath.Join("sigs.k8s.io", "kind@"+version, "images", "base", "files")
	for _, mc := range nodeGoModCaches() {
		if fi, err := os.Stat(filepath.Join(mc, rel, "usr", "local", "bin", "entrypoint")); err == nil && fi.Mode().IsRegular() {
			return filepath.Join(mc, rel), nil
		}
	}
	info, err := c.moduleInfo(ctx, "sigs.k8s.io/kind", version)
	if err != nil {
		return "", fmt.Errorf("kind's node image files: %w", err)
	}
	return filepath.Join(info.Dir, "images", "base", "files"), nil
}

// kindModuleVersion is the version of sigs.k8s.io/kind this program links
// (the one whose Go API creates the clusters), else the one the
// repository's go.mod requires.
func kindModuleVersion() (string, error) {
	const mod = "sigs.k8s.io/kind"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == mod {
				if d.Replace != nil {
					return d.Replace.Version, nil
				}
				return d.Version, nil
			}
		}
	}
	root, err := repo.Root()
	if err != nil {
		return "", fmt.Errorf("kind's version is unknown: %w", err)
	}
	data, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return "", fmt.Errorf("kind's version is unknown: %w", err)
	}
	f, err := modfile.ParseLax("go.mod", data, nil)
	if err != nil {
		return "", fmt.Errorf("kind's version is unknown: %w", err)
	}
	for _, r := range f.Require {
		if r.Mod.Path == mod {
			return r.Mod.Version, nil
		}
	}
	return "", fmt.Errorf("kind's version is unknown: %s is not required by %s/go.mod", mod, root)
}

// nodeGoModCaches are the likely module cache roots, cheapest first.
func nodeGoModCaches() []string {
	var out []string
	if d := os.Getenv("GOMODCACHE"); d != "" {
		out = append(out, d)
	}
	if d := os.Getenv("GOPATH"); d != "" {
		out = append(out, filepath.Join(filepath.SplitList(d)[0], "pkg", "mod"))
	}
	if h, err := os.UserHomeDir(); err == nil {
		out = append(out, filepath.Join(h, "go", "pkg", "mod"))
	}
	if b, err := exec.Command("go", "env", "GOMODCACHE").Output(); err == nil {
		if d := strings.TrimSpace(string(b)); d != "" {
			out = append(out, d)
		}
	}
	return out
}

// kindFile is one of kind's files put into the node, with its mode (the
// module cache keeps files read-only, so modes are set as kind's
// Dockerfile does: 0755 for scripts, 0644 for the rest).
type kindFile struct {
	src, dst string
	mode     fs.FileMode
}

// kindNodeFiles are the kind files a node needs. Left out: kind's own
// containerd config (ours replaces it), the fuse-overlayfs unit (no
// snapshotter binary here), clean-install (no apt at run time), licences.
func kindNodeFiles(kindDir string) ([]kindFile, error) {
	files := []kindFile{
		{"usr/local/bin/entrypoint", "usr/local/bin/entrypoint", 0o755},
		{"etc/crictl.yaml", "etc/crictl.yaml", 0o644},
		{"etc/default/kubelet", "etc/default/kubelet", 0o644},
		{"etc/systemd/system/containerd.service", "etc/systemd/system/containerd.service", 0o644},
		{"etc/systemd/system/kubelet.service", "etc/systemd/system/kubelet.service", 0o644},
		{"etc/systemd/system/kubelet.slice", "etc/systemd/system/kubelet.slice", 0o644},
		{"etc/systemd/system/undo-mount-hacks.service", "etc/systemd/system/undo-mount-hacks.service", 0o644},
	}
	for _, glob := range []struct {
		dir  string
		mode fs.FileMode
	}{
		{"kind/bin", 0o755},
		{"etc/sysctl.d", 0o644},
		{"etc/systemd/system/kubelet.service.d", 0o644},
	} {
		entries, err := os.ReadDir(filepath.Join(kindDir, glob.dir))
		if err != nil {
			return nil, fmt.Errorf("kind files: %w", err)
		}
		for _, e := range entries {
			if e.Type().IsRegular() {
				p := path.Join(glob.dir, e.Name())
				files = append(files, kindFile{p, p, glob.mode})
			}
		}
	}
	return files, nil
}

// buildNodeImage writes dir/layer.tar.gz (the node's root filesystem as one
// layer) and dir/image.json (what loadNodeImage needs to assemble the image).
func (c *Cache) buildNodeImage(ctx context.Context, in *nodeImageInputs, ref, dir string) error {
	if os.Geteuid() != 0 {
		return errors.New("building a node image needs root (the root filesystem has device nodes and files of other owners)")
	}
	root := filepath.Join(dir, "rootfs")
	// The rootfs is scaffolding: only the layer made from it is kept.
	defer os.RemoveAll(root)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	step := func(name string, fn func() error) error {
		t0 := time.Now()
		err := fn()
		c.Log.Debugf("node image: %s (%s)", name, time.Since(t0).Truncate(100*time.Millisecond))
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}
	if err := step("unpack rootfs", func() error {
		return hostcmd.Run(ctx, "tar", "-C", root, "-xpf", in.Rootfs, "--numeric-owner", "--xattrs", "--xattrs-include=*")
	}); err != nil {
		return err
	}
	if err := step("install files", func() error { return c.installNodeFiles(ctx, in, root) }); err != nil {
		return err
	}
	if err := step("prepare systemd", func() error { return prepareNodeSystemd(root) }); err != nil {
		return err
	}
	var preload string
	if err := step("build control-plane images", func() (err error) {
		preload, err = c.writeControlPlaneImages(ctx, in, dir)
		return err
	}); err != nil {
		return err
	}
	if err := step("preload images", func() error { return c.preloadImages(ctx, in, root, preload) }); err != nil {
		return err
	}
	_ = os.Remove(preload)
	var meta ociLayerMeta
	if err := step("pack layer", func() (err error) {
		meta, err = packRootfsLayer(ctx, root, filepath.Join(dir, "layer.tar.gz"))
		return err
	}); err != nil {
		return err
	}
	img := nodeImageMeta{Ref: ref, Arch: in.Arch, Layer: meta, KubeVersion: in.KubeVersion}
	b, err := json.MarshalIndent(img, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "image.json"), b, 0o644)
}

// nodeImageMeta is dir/image.json of a built node image.
type nodeImageMeta struct {
	Ref         string       `json:"ref"`
	Arch        string       `json:"arch"`
	KubeVersion string       `json:"kubeVersion"`
	Layer       ociLayerMeta `json:"layer"`
}

// installNodeFiles puts kind's runtime files, the binaries and our
// configuration into the root filesystem.
func (c *Cache) installNodeFiles(ctx context.Context, in *nodeImageInputs, root string) error {
	kfiles, err := kindNodeFiles(in.KindFiles)
	if err != nil {
		return err
	}
	for _, f := range kfiles {
		if err := nodeCopyInto(root, filepath.Join(in.KindFiles, f.src), f.dst, f.mode); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(root, "kind"), 0o755); err != nil {
		return err
	}
	bins := []struct{ dir, name, dst string }{
		{in.Containerd, "containerd", "usr/local/bin"},
		{in.Containerd, "containerd-shim-runc-v2", "usr/local/bin"},
		{in.Containerd, "ctr", "usr/local/bin"},
		{in.Crictl, "crictl", "usr/local/bin"},
		{in.Kube, "kubeadm", "usr/bin"},
		{in.Kube, "kubelet", "usr/bin"},
		{in.Kube, "kubectl", "usr/bin"},
	}
	for _, b := range bins {
		if err := nodeCopyInto(root, filepath.Join(b.dir, b.name), path.Join(b.dst, b.name), 0o755); err != nil {
			return err
		}
	}
	// Debian's plugins live in /usr/lib/cni; kubelet, containerd and CNI
	// installers expect /opt/cni/bin. A real directory of links lets a CNI
	// DaemonSet add its own plugin there without touching Debian's.
	plugins, err := os.ReadDir(filepath.Join(root, "usr/lib/cni"))
	if err != nil {
		return fmt.Errorf("read the Debian CNI plugins: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(root, "opt/cni/bin"), 0o755); err != nil {
		return err
	}
	for _, p := range plugins {
		if err := os.Symlink("/usr/lib/cni/"+p.Name(), filepath.Join(root, "opt/cni/bin", p.Name())); err != nil {
			return err
		}
	}
	spec, err := criBaseSpec(ctx, filepath.Join(in.HostContainerd, "ctr"), in.Arch)
	if err != nil {
		return err
	}
	for p, content := range map[string]string{
		"etc/containerd/config.toml":          in.Config,
		"etc/containerd/cri-base.json":        string(spec),
		"kind/version":                        in.KubeVersion + "\n",
		"kind/manifests/default-storage.yaml": nodeStorageManifest,
	} {
		if err := nodeWriteInto(root, p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return os.MkdirAll(filepath.Join(root, "etc/kubernetes/manifests"), 0o755)
}

// criBaseSpec is kind's /etc/containerd/cri-base.json: containerd's default
// OCI spec with kind's createContainer hook (it gives each container its
// own product_uuid) and without rlimits (containers inherit the node's).
func criBaseSpec(ctx context.Context, ctr, arch string) ([]byte, error) {
	out, err := hostcmd.RunOutput(ctx, ctr, "oci", "spec", "--platform", "linux/"+arch)
	if err != nil {
		return nil, err
	}
	var spec map[string]any
	if err := json.Unmarshal(out, &spec); err != nil {
		return nil, fmt.Errorf("ctr oci spec: %w", err)
	}
	if p, ok := spec["process"].(map[string]any); ok {
		delete(p, "rlimits")
	}
	hooks, _ := spec["hooks"].(map[string]any)
	if hooks == nil {
		hooks = map[string]any{}
	}
	cc, _ := hooks["createContainer"].([]any)
	hooks["createContainer"] = append(cc, map[string]any{"path": "/kind/bin/mount-product-files.sh"})
	spec["hooks"] = hooks
	return json.MarshalIndent(spec, "", "  ")
}

// prepareNodeSystemd does what kind's Dockerfile does to systemd: drop the
// units that make no sense in a container, keep the kernel log out of the
// journal, enable containerd, kubelet and undo-mount-hacks, and mask
// systemd-binfmt (binfmt_misc is kernel-global).
func prepareNodeSystemd(root string) error {
	var remove []string
	for _, g := range []string{
		"usr/lib/systemd/system/sysinit.target.wants/systemd-tmpfiles-setup.service",
		"usr/lib/systemd/system/multi-user.target.wants/*",
		"etc/systemd/system/*.wants/*",
		"usr/lib/systemd/system/local-fs.target.wants/*",
		"usr/lib/systemd/system/sockets.target.wants/*udev*",
		"usr/lib/systemd/system/sockets.target.wants/*initctl*",
		"usr/lib/systemd/system/basic.target.wants/*",
	} {
		m, err := filepath.Glob(filepath.Join(root, g))
		if err != nil {
			return err
		}
		remove = append(remove, m...)
	}
	for _, p := range remove {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	f, err := os.OpenFile(filepath.Join(root, "etc/systemd/journald.conf"), os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString("ReadKMsg=no\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	// /sbin is a link to usr/sbin in a merged-/usr root.
	if _, err := os.Lstat(filepath.Join(root, "usr/sbin/init")); os.IsNotExist(err) {
		if err := os.Symlink("/usr/lib/systemd/systemd", filepath.Join(root, "usr/sbin/init")); err != nil {
			return err
		}
	}
	wants := filepath.Join(root, "etc/systemd/system/multi-user.target.wants")
	if err := os.MkdirAll(wants, 0o755); err != nil {
		return err
	}
	for _, u := range []string{"containerd.service", "kubelet.service", "undo-mount-hacks.service"} {
		if err := os.Symlink("/etc/systemd/system/"+u, filepath.Join(wants, u)); err != nil {
			return err
		}
	}
	mask := filepath.Join(root, "etc/systemd/system/systemd-binfmt.service")
	_ = os.Remove(mask)
	return os.Symlink("/dev/null", mask)
}

// writeControlPlaneImages builds the images kubeadm asks for from our
// binaries, as single-arch OCI images, and writes them into one
// docker-archive tarball under kubeadm's exact tags. They look like the
// upstream images where kubeadm and kind depend on it: static binaries in
// /usr/local/bin on PATH (kubeadm's manifests run "kube-apiserver", "etcd"
// ...), /coredns and /pause as entrypoints.
func (c *Cache) writeControlPlaneImages(ctx context.Context, in *nodeImageInputs, dir string) (string, error) {
	tags, err := parseControlPlaneImages(in.Images)
	if err != nil {
		return "", err
	}
	base, err := LayerFromFiles(controlPlaneBaseFiles())
	if err != nil {
		return "", err
	}
	iptables, err := c.IptablesBaseLayer(ctx, in.Arch)
	if err != nil {
		return "", err
	}
	const pathEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	type spec struct {
		layers     []v1.Layer
		files      map[string]string // path in image -> host file
		entrypoint []string
	}
	kube := func(n string) spec {
		return spec{[]v1.Layer{base}, map[string]string{"usr/local/bin/" + n: filepath.Join(in.Kube, n)}, []string{"/usr/local/bin/" + n}}
	}
	specs := map[string]spec{
		"kube-apiserver":          kube("kube-apiserver"),
		"kube-controller-manager": kube("kube-controller-manager"),
		"kube-scheduler":          kube("kube-scheduler"),
		// kube-proxy runs iptables, ip6tables and conntrack of its image.
		"kube-proxy": {[]v1.Layer{iptables}, map[string]string{"usr/local/bin/kube-proxy": filepath.Join(in.Kube, "kube-proxy")}, []string{"/usr/local/bin/kube-proxy"}},
		"etcd":       {[]v1.Layer{base}, map[string]string{"usr/local/bin/etcd": filepath.Join(in.Etcd, "etcd")}, []string{"/usr/local/bin/etcd"}},
		"coredns":    {[]v1.Layer{base}, map[string]string{"coredns": filepath.Join(in.CoreDNS, "coredns")}, []string{"/coredns"}},
		"pause":      {nil, map[string]string{"pause": filepath.Join(in.Pause, "pause")}, []string{"/pause"}},
	}
	if _, err := os.Stat(filepath.Join(in.Etcd, "etcdctl")); err == nil {
		specs["etcd"].files["usr/local/bin/etcdctl"] = filepath.Join(in.Etcd, "etcdctl")
	}
	refs := map[name.Reference]v1.Image{}
	for comp, s := range specs {
		bin, err := c.binaryLayer(ctx, comp+"-"+in.Arch, s.files)
		if err != nil {
			return "", fmt.Errorf("%s image: %w", comp, err)
		}
		img, err := NewImage(in.Arch, append(slices.Clone(s.layers), bin), v1.Config{
			Env:        []string{pathEnv},
			Entrypoint: s.entrypoint,
		})
		if err != nil {
			return "", fmt.Errorf("%s image: %w", comp, err)
		}
		refs[tags[comp]] = img
	}
	out := filepath.Join(dir, "preload.tar")
	if err := tarball.MultiRefWriteToFile(out, refs); err != nil {
		return "", fmt.Errorf("write control-plane images: %w", err)
	}
	return out, nil
}

// controlPlaneBaseFiles is the little a static Go server image needs beside
// its binary: users for runAsUser/nonroot lookups, a writable /tmp, and
// name-service order.
func controlPlaneBaseFiles() LayerFiles {
	return LayerFiles{
		"etc":               {Mode: fs.ModeDir | 0o755},
		"etc/passwd":        {Content: []byte("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		"etc/group":         {Content: []byte("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n")},
		"etc/nsswitch.conf": {Content: []byte("hosts: files dns\n")},
		"tmp":               {Mode: fs.ModeDir | fs.ModeSticky | 0o777},
		"root":              {Mode: fs.ModeDir | 0o700},
		"usr":               {Mode: fs.ModeDir | 0o755},
		"usr/local":         {Mode: fs.ModeDir | 0o755},
		"usr/local/bin":     {Mode: fs.ModeDir | 0o755},
		"home":              {Mode: fs.ModeDir | 0o755},
		"home/nonroot":      {Mode: fs.ModeDir | 0o700},
	}
}

// binaryLayer is a cached layer of host files (static binaries) placed at
// the given image paths, mode 0755, keyed by their names, sizes and times.
func (c *Cache) binaryLayer(ctx context.Context, entry string, files map[string]string) (v1.Layer, error) {
	type item struct {
		Path, Src string
		Size      int64
		MTime     int64
	}
	var items []item
	for p, src := range files {
		fi, err := os.Stat(src)
		if err != nil {
			return nil, err
		}
		items = append(items, item{ociCleanPath(p), src, fi.Size(), fi.ModTime().UnixNano()})
	}
	slices.SortFunc(items, func(a, b item) int { return strings.Compare(a.Path, b.Path) })
	return c.ociCachedLayer(ctx, ociEntryName(entry), Key(ociLayerRecipe, "binaries", items), func(ctx context.Context, w io.Writer) error {
		tw := newNodeTarWriter(w)
		for _, it := range items {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := tw.dirs(path.Dir(it.Path)); err != nil {
				return err
			}
			if err := tw.file(it.Path, it.Src, it.Size, 0o755); err != nil {
				return err
			}
		}
		return tw.Close()
	})
}

// preloadImages imports the control-plane images into the node's own
// containerd store, as kind does when it builds node images, but without a
// container (see ImportIntoRootfs). The images are pinned (the kubelet's
// image GC never removes them) and left packed: the node unpacks what it runs.
func (c *Cache) preloadImages(ctx context.Context, in *nodeImageInputs, root, archive string) error {
	return ImportIntoRootfs(ctx, RootfsImport{
		HostContainerd: in.HostContainerd, Root: root, Archive: archive, Arch: in.Arch, Images: in.Images,
	})
}

// packRootfsLayer writes root as one gzip layer to out. GNU tar reads the
// tree (hard links, device nodes, xattrs such as file capabilities as they
// are); the gzip and both digests are made in the same pass.
func packRootfsLayer(ctx context.Context, root, out string) (ociLayerMeta, error) {
	f, err := os.Create(out)
	if err != nil {
		return ociLayerMeta{}, err
	}
	defer f.Close()
	meta, err := ociCompress(f, func(w io.Writer) error {
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, "tar", "-C", root, "--numeric-owner", "--xattrs", "--xattrs-include=*",
			"--sort=name", "-cf", "-", ".")
		cmd.Stdout, cmd.Stderr = w, &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("tar %s: %w: %s", root, err, hostcmd.LastLines(stderr.String(), 10))
		}
		return nil
	})
	if err != nil {
		return meta, err
	}
	return meta, f.Close()
}

// assembleNodeImage assembles the node image from its cached layer. Its config is
// what kind's Dockerfile declares: systemd as PID 1 behind kind's
// entrypoint, SIGRTMIN+3 to stop it, container=docker for systemd.
func assembleNodeImage(dir string) (v1.Image, *nodeImageMeta, error) {
	b, err := os.ReadFile(filepath.Join(dir, "image.json"))
	if err != nil {
		return nil, nil, err
	}
	var m nodeImageMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", dir, err)
	}
	layer := &ociFileLayer{file: filepath.Join(dir, "layer.tar.gz"), digest: m.Layer.Digest, diffID: m.Layer.DiffID, size: m.Layer.Size}
	img, err := NewImage(m.Arch, []v1.Layer{layer}, v1.Config{
		Entrypoint: []string{"/usr/local/bin/entrypoint", "/sbin/init"},
		Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "container=docker"},
		StopSignal: "SIGRTMIN+3",
		Labels: map[string]string{
			nodeImageLabel:                "node-image",
			"io.cnimatrix.kubernetes":     m.KubeVersion,
			"io.cnimatrix.node-image.ref": m.Ref,
		},
	})
	if err != nil {
		return nil, nil, err
	}
	return img, &m, nil
}

// loadNodeImage makes sure Docker has the image under ref, with the image ID
// (config digest) built here; otherwise it streams the image into
// `docker load`.
func (c *Cache) loadNodeImage(ctx context.Context, dir, ref string) error {
	img, _, err := assembleNodeImage(dir)
	if err != nil {
		return err
	}
	return DockerLoad(ctx, ref, img, c.Log)
}

// nodeCopyInto copies host file src to rel inside root with mode, creating
// parent directories. It writes through the rootfs's own /usr symlinks
// (relative ones), never outside root.
func nodeCopyInto(root, src, rel string, mode fs.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return nodeWriteInto(root, rel, data, mode)
}

func nodeWriteInto(root, rel string, data []byte, mode fs.FileMode) error {
	dst := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	_ = os.Remove(dst)
	if err := os.WriteFile(dst, data, mode); err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}

// nodeTarWriter writes layer entries owned by root with the fixed time, and
// each parent directory once.
type nodeTarWriter struct {
	*tar.Writer
	seen map[string]bool
}

func newNodeTarWriter(w io.Writer) *nodeTarWriter {
	return &nodeTarWriter{Writer: tar.NewWriter(w), seen: map[string]bool{}}
}

func (t *nodeTarWriter) dirs(dir string) error {
	if dir == "." || dir == "/" || dir == "" || t.seen[dir] {
		return nil
	}
	if err := t.dirs(path.Dir(dir)); err != nil {
		return err
	}
	t.seen[dir] = true
	return t.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755, ModTime: ociEpoch, Format: tar.FormatPAX})
}

func (t *nodeTarWriter) file(name, src string, size int64, mode int64) error {
	return ociTarFile(t.Writer, &tar.Header{Name: name, Mode: mode, ModTime: ociEpoch, Format: tar.FormatPAX}, src, size)
}
