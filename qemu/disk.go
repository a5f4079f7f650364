// Package qemu builds arm64 Kubernetes node disks and boots them as QEMU
// full-system virtual machines: a real aarch64 kernel (TCG on amd64 hosts,
// KVM on arm64 hosts with /dev/kvm), for what containers under qemu-user
// cannot show (kernel modules, iptables, seccomp, exec of foreign binaries).
//
// One disk serves every node: per-VM settings (hostname, address, /etc/hosts
// entries, the kubeadm join command) travel on the kernel command line (see
// NodeConfig), and each VM writes to its own copy-on-write overlay.
package qemu

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cnimatrix/cnimatrix/internal/hostcmd"
	"github.com/cnimatrix/cnimatrix/internal/images"
)

// Arch is the architecture of the disks and VMs this package makes.
const Arch = "arm64"

// DiskSize is the size of the node disk's ext4 file system. The file is
// sparse and each VM writes into its own overlay, so it costs what is used.
const DiskSize = "6G"

// diskRecipe is bumped whenever BuildDisk changes what it produces.
const diskRecipe = "qemu-disk/v4"

// diskPackages are the Debian packages of a node disk. minbase runs their
// maintainer scripts (users, alternatives, systemd presets) under qemu-user,
// which costs minutes once and is cached; udev is there because systemd on
// a real kernel waits for device units only udev announces (serial getty,
// network links).
var diskPackages = []string{
	"systemd", "systemd-sysv", "udev", "dbus",
	"iptables", "iproute2", "kmod", "ca-certificates", "conntrack", "ethtool", "socat",
	"util-linux", "mount", "procps", "iputils-ping",
	"runc", "containernetworking-plugins",
}

// kernelPackage pulls, as its dependency, the current versioned Debian arm64
// kernel (linux-image-6.1.0-N-arm64 on bookworm). Only its files are used,
// unpacked without running anything.
const kernelPackage = "linux-image-arm64"

// initramfsModules are loaded by the initramfs, with their dependencies, to
// reach the root disk. Debian builds them as modules; one the kernel has
// built in is skipped. crc32c is ext4's soft dependency (metadata
// checksums) which modules.dep does not list.
var initramfsModules = []string{"virtio_pci", "virtio_mmio", "virtio_blk", "virtio_net", "crc32c_generic", "ext4"}

//go:embed initramfs/*.go
var initramfsSource embed.FS

// Disk is a bootable node: kernel, initramfs and root file system image.
type Disk struct {
	// Kernel is the Debian arm64 kernel (vmlinuz).
	Kernel string
	// Initrd is the gzip newc initramfs.
	Initrd string
	// Image is the raw ext4 root file system, used read-only through
	// per-VM overlays.
	Image string
	// Key is the cache key of all inputs.
	Key string
	// KernelVersion is the kernel release, e.g. 6.1.0-56-arm64.
	KernelVersion string
	// KubeVersion is the Kubernetes version of kubeadm and kubelet.
	KubeVersion string
	// Images are the image references preloaded into containerd.
	Images []string
}

// diskInputs is everything a disk is made from; its Key names the disk.
type diskInputs struct {
	Recipe         string
	KubeVersion    string
	Rootfs         string // cached tarballs and build dirs carry their own keys
	KernelRootfs   string
	Containerd     string
	HostContainerd string
	Crictl         string
	Kube           string
	Pause          string
	Init           string
	Hello          string
	Agent          string
	ProxyBase      string // digest of the kube-proxy image's iptables layer
	Images         []string
	// Extra are the images of DiskOptions.Preload, as ref@digest.
	Extra       []string
	Files       map[string]string // generated files of the disk (path -> content)
	Snapshotter string            // preloaded images are unpacked into it
	Modules     []string
	Enabled     []string
	Masked      []string
	Size        string

	extra map[string]v1.Image // not part of the key: Extra is
}

// DiskOptions add to what every disk has.
type DiskOptions struct {
	// Preload are more images (arm64 ones; an index contributes its arm64
	// entry) put into the disk's containerd under their references: the
	// harness's own workload images and offline CNI, which would otherwise be
	// pulled and unpacked under TCG by every VM. Images under test that must
	// be pulled as a real node pulls them are not preloaded.
	Preload map[string]v1.ImageIndex
}

// BuildDisk builds (or finds cached) the arm64 node disk of Kubernetes
// k8sVersion, offline: Debian bookworm with systemd, Debian's arm64 kernel
// and a host-built initramfs, containerd 2, runc, CNI plugins, crictl,
// kubeadm and kubelet, and the pause and kube-proxy images preloaded.
// Building needs root (device nodes, file ownership) and qemu-user binfmt
// for arm64 on a non-arm64 host.
func BuildDisk(ctx context.Context, c *images.Cache, k8sVersion string, opts DiskOptions) (*Disk, error) {
	in, err := diskBuildInputs(ctx, c, k8sVersion, opts)
	if err != nil {
		return nil, fmt.Errorf("qemu disk %s: %w", k8sVersion, err)
	}
	key := images.Key(in)
	dir, err := c.DoLocked(ctx, "qemu", "disk-"+k8sVersion+"-"+Arch, key, func(ctx context.Context, dir string) error {
		done := c.Log.Phase(fmt.Sprintf("build qemu %s node disk %s", Arch, k8sVersion))
		err := buildDisk(ctx, c, in, dir)
		done(err)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("qemu disk %s: %w", k8sVersion, err)
	}
	kver, err := os.ReadFile(filepath.Join(dir, "kernel-version"))
	if err != nil {
		return nil, fmt.Errorf("qemu disk %s: %w", k8sVersion, err)
	}
	return &Disk{
		Kernel:        filepath.Join(dir, "vmlinuz"),
		Initrd:        filepath.Join(dir, "initrd.img"),
		Image:         filepath.Join(dir, "disk.img"),
		Key:           key,
		KernelVersion: strings.TrimSpace(string(kver)),
		KubeVersion:   k8sVersion,
		Images:        append(append([]string{}, in.Images...), in.Extra...),
	}, nil
}

// diskBuildInputs builds or finds every cached part of the disk; a warm call
// costs stats and one `kubeadm config images list`.
func diskBuildInputs(ctx context.Context, c *images.Cache, k8sVersion string, opts DiskOptions) (*diskInputs, error) {
	in := &diskInputs{Recipe: diskRecipe, KubeVersion: k8sVersion, Snapshotter: preloadSnapshotter, Modules: initramfsModules, Enabled: enabledUnits, Masked: maskedUnits, Size: DiskSize}
	var err error
	if in.Rootfs, err = c.DebianRootfs(ctx, images.RootfsSpec{Arch: Arch, Suite: "bookworm", Variant: "minbase", Packages: diskPackages}); err != nil {
		return nil, err
	}
	if in.KernelRootfs, err = c.DebianRootfs(ctx, images.RootfsSpec{Arch: Arch, Suite: "bookworm", Variant: "extract", Packages: []string{kernelPackage}}); err != nil {
		return nil, err
	}
	kb, err := c.Kubernetes(ctx, k8sVersion, Arch)
	if err != nil {
		return nil, err
	}
	in.Kube = kb.Dir
	all, err := kb.ControlPlaneImages(ctx)
	if err != nil {
		return nil, err
	}
	for _, ref := range all {
		if b := path.Base(strings.SplitN(ref, ":", 2)[0]); b == "pause" || b == "kube-proxy" {
			in.Images = append(in.Images, ref)
		}
	}
	slices.Sort(in.Images)
	if len(in.Images) != 2 {
		return nil, fmt.Errorf("kubeadm %s lists no pause or kube-proxy image: %s", k8sVersion, strings.Join(all, ", "))
	}
	if in.Containerd, err = c.Containerd(ctx, Arch); err != nil {
		return nil, err
	}
	in.HostContainerd = in.Containerd
	if runtime.GOARCH != Arch {
		if in.HostContainerd, err = c.Containerd(ctx, runtime.GOARCH); err != nil {
			return nil, err
		}
	}
	if in.Crictl, err = c.Crictl(ctx, Arch); err != nil {
		return nil, err
	}
	if in.Pause, err = c.Pause(ctx, Arch); err != nil {
		return nil, err
	}
	base, err := c.IptablesBaseLayer(ctx, Arch)
	if err != nil {
		return nil, err
	}
	d, err := base.Digest()
	if err != nil {
		return nil, err
	}
	in.ProxyBase = d.String()
	if in.Init, err = buildInit(ctx, c); err != nil {
		return nil, err
	}
	if in.Hello, err = buildHello(ctx, c); err != nil {
		return nil, err
	}
	if in.Agent, err = buildAgent(ctx, c, Arch); err != nil {
		return nil, err
	}
	extra, err := preloadExtra(opts.Preload)
	if err != nil {
		return nil, err
	}
	for ref, img := range extra {
		d, err := img.Digest()
		if err != nil {
			return nil, fmt.Errorf("preload %s: %w", ref, err)
		}
		in.Extra = append(in.Extra, ref+"@"+d.String())
	}
	slices.Sort(in.Extra)
	in.extra = extra
	in.Files = diskFiles(pauseImage(in.Images))
	return in, nil
}

func pauseImage(refs []string) string {
	for _, r := range refs {
		if path.Base(strings.SplitN(r, ":", 2)[0]) == "pause" {
			return r
		}
	}
	return ""
}

// buildInit compiles qemu/initramfs (embedded in this package) for arm64.
func buildInit(ctx context.Context, c *images.Cache) (string, error) {
	files := map[string]string{}
	err := fs.WalkDir(initramfsSource, "initramfs", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := initramfsSource.ReadFile(p)
		files[p] = string(b)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("initramfs source: %w", err)
	}
	dir, err := c.GoBuild(ctx, images.GoBuild{
		Name:     "qemu-initramfs",
		Packages: []string{images.BuildModule + "/initramfs"},
		Files:    files,
		Arch:     Arch,
	})
	if err != nil {
		return "", fmt.Errorf("build initramfs init: %w", err)
	}
	return filepath.Join(dir, "initramfs"), nil
}

// helloSource is a static amd64 program put into the arm64 disk: a real
// aarch64 kernel must refuse to run it (no binfmt emulation in the VM).
const helloSource = `package main

import "fmt"

func main() { fmt.Println("hello from amd64") }
`

func buildHello(ctx context.Context, c *images.Cache) (string, error) {
	dir, err := c.GoBuild(ctx, images.GoBuild{
		Name:     "qemu-hello",
		Packages: []string{images.BuildModule + "/hello"},
		Files:    map[string]string{"hello/main.go": helloSource},
		Arch:     "amd64",
	})
	if err != nil {
		return "", fmt.Errorf("build hello-amd64: %w", err)
	}
	return filepath.Join(dir, "hello"), nil
}

// buildDisk assembles the root file system in dir/rootfs (removed at the
// end) and writes dir/vmlinuz, dir/initrd.img, dir/disk.img and
// dir/kernel-version.
func buildDisk(ctx context.Context, c *images.Cache, in *diskInputs, dir string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("building a node disk needs root (device nodes, file ownership)")
	}
	root := filepath.Join(dir, "rootfs")
	defer os.RemoveAll(root)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	step := func(name string, fn func() error) error {
		t0 := time.Now()
		err := fn()
		c.Log.Infof("qemu disk: %s (%s)", name, time.Since(t0).Truncate(100*time.Millisecond))
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
	var kver string
	if err := step("install kernel", func() (err error) {
		kver, err = installKernel(ctx, in.KernelRootfs, root, dir)
		return err
	}); err != nil {
		return err
	}
	if err := step("build initramfs", func() error {
		return writeInitramfs(root, kver, in.Init, in.Modules, filepath.Join(dir, "initrd.img"))
	}); err != nil {
		return err
	}
	if err := step("install files", func() error { return installFiles(in, root) }); err != nil {
		return err
	}
	if err := step("preload images", func() error { return preloadImages(ctx, c, in, root, dir) }); err != nil {
		return err
	}
	if err := step("mkfs.ext4", func() error {
		return hostcmd.Run(ctx, "mkfs.ext4", "-q", "-L", "cnimatrix-root", "-d", root, filepath.Join(dir, "disk.img"), in.Size)
	}); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "kernel-version"), []byte(kver+"\n"), 0o644)
}

// installKernel puts the kernel's modules (and its config, which kubeadm's
// preflight reads) into root, writes vmlinuz to outDir and indexes the
// modules with the disk's own depmod (under qemu-user on an amd64 host: the
// host may have no kmod at all).
func installKernel(ctx context.Context, kernelTar, root, outDir string) (string, error) {
	list, err := hostcmd.RunOutput(ctx, "tar", "-tf", kernelTar, "--wildcards", "./boot/vmlinuz-*")
	if err != nil {
		return "", err
	}
	names := strings.Fields(string(list))
	if len(names) != 1 {
		return "", fmt.Errorf("want one kernel in %s, found %q", kernelTar, names)
	}
	kver := strings.TrimPrefix(path.Base(names[0]), "vmlinuz-")
	if err := hostcmd.Run(ctx, "tar", "-C", outDir, "-xpf", kernelTar, "--numeric-owner", "--strip-components=2", names[0]); err != nil {
		return "", err
	}
	if err := os.Rename(filepath.Join(outDir, "vmlinuz-"+kver), filepath.Join(outDir, "vmlinuz")); err != nil {
		return "", err
	}
	// Paths under usr/ only: extracting ./lib would replace the rootfs's
	// /lib -> usr/lib symlink with a directory.
	modules := "./usr/lib/modules/" + kver
	if err := hostcmd.Run(ctx, "tar", "-C", root, "-xpf", kernelTar, "--numeric-owner", modules, "./boot/config-"+kver); err != nil {
		return "", err
	}
	if err := hostcmd.Run(ctx, "chroot", root, "/usr/sbin/depmod", "-a", kver); err != nil {
		return "", fmt.Errorf("depmod in the disk: %w", err)
	}
	return kver, nil
}
