package images

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/mod/semver"
)

const (
	// ContainerdVersion is the containerd of node images and VM disks: the
	// 2.x release this project was proven with (kind nodes and arm64 VMs
	// joined to them), with CRI config version 3 and Kubernetes 1.36+
	// support. kind v0.33.0 itself pins v2.3.4; 2.4 is a superset for us.
	ContainerdVersion = "v2.4.2"
	// CrictlVersion follows the newest Kubernetes minor we build: cri-tools
	// releases track Kubernetes minors, and crictl speaks CRI v1, which every
	// supported kubelet/containerd pair uses, so one crictl serves all cells.
	CrictlVersion = "v1.37.0"
)

// containerdTags leave out snapshotters a node never selects, as kind does;
// btrfs is also the only part of containerd that needs cgo.
var containerdTags = []string{"no_btrfs", "no_devmapper", "no_zfs", "no_aufs"}

// Containerd builds containerd, containerd-shim-runc-v2 and ctr for
// linux/arch.
//
// CGO_ENABLED=0 on purpose. With the tags above, the only cgo left in
// containerd v2.4.2's build graph is github.com/miekg/pkcs11 (PKCS#11 keys for
// encrypted images, unused here) and the standard library's optional cgo
// resolvers. Seccomp needs no cgo: pkg/seccomp asks the kernel with
// prctl(PR_SET_SECCOMP) whether filters exist, and the CRI plugin turns
// RuntimeDefault into an OCI seccomp section that runc (not containerd)
// loads. So pods with seccompProfile RuntimeDefault (kubeadm's CoreDNS) work
// with a static containerd on a real kernel: a RuntimeDefault container
// started through CRI by this build shows "Seccomp: 2" in /proc/PID/status.
// The "no seccomp support" seen earlier was qemu-user, which rejects
// PR_SET_SECCOMP: CRI then fails with "seccomp is not supported", whatever
// containerd was built with.
func (c *Cache) Containerd(ctx context.Context, arch string) (string, error) {
	const mod = "github.com/containerd/containerd/v2"
	b := GoBuild{
		Name:     "containerd-" + ContainerdVersion,
		Requires: map[string]string{mod: ContainerdVersion},
		Packages: []string{mod + "/cmd/containerd", mod + "/cmd/containerd-shim-runc-v2", mod + "/cmd/ctr"},
		Arch:     arch,
		Tags:     containerdTags,
		// What containerd's Makefile stamps, so `containerd --version`
		// says v2.4.2 rather than 2.4.2+unknown.
		LDFlags: []string{
			"-X=" + mod + "/version.Version=" + ContainerdVersion,
			"-X=" + mod + "/version.Package=" + mod,
		},
	}
	dir, err := c.GoBuild(ctx, b)
	if err != nil {
		return "", fmt.Errorf("build containerd %s linux/%s: %w", ContainerdVersion, arch, err)
	}
	return dir, nil
}

// Crictl builds crictl for linux/arch.
func (c *Cache) Crictl(ctx context.Context, arch string) (string, error) {
	b := GoBuild{
		Name:     "crictl-" + CrictlVersion,
		Requires: map[string]string{"sigs.k8s.io/cri-tools": CrictlVersion},
		Packages: []string{"sigs.k8s.io/cri-tools/cmd/crictl"},
		Arch:     arch,
		LDFlags:  []string{"-X=sigs.k8s.io/cri-tools/pkg/version.Version=" + CrictlVersion},
	}
	dir, err := c.GoBuild(ctx, b)
	if err != nil {
		return "", fmt.Errorf("build crictl %s linux/%s: %w", CrictlVersion, arch, err)
	}
	return dir, nil
}

var etcdTagRe = regexp.MustCompile(`^v?([0-9]+\.[0-9]+\.[0-9]+)(-[0-9]+)?$`)

// etcdModuleVersion maps an etcd image tag to the etcd release it packages:
// "3.7.0-0" -> "v3.7.0" (the -N suffix counts image rebuilds).
func etcdModuleVersion(imageTag string) (string, error) {
	m := etcdTagRe.FindStringSubmatch(imageTag)
	if m == nil {
		return "", fmt.Errorf("etcd image tag %q: want MAJOR.MINOR.PATCH[-N] (e.g. 3.7.0-0)", imageTag)
	}
	v := "v" + m[1]
	if semver.Major(v) != "v3" {
		return "", fmt.Errorf("etcd image tag %q: only etcd v3 is built from go.etcd.io/etcd/*/v3", imageTag)
	}
	return v, nil
}

// Etcd builds etcd for the image tag kubeadm asks for (e.g. "3.7.0-0") for
// linux/arch, and etcdctl of the same release when the proxy serves it (the
// etcd image has it; kubeadm does not need it).
func (c *Cache) Etcd(ctx context.Context, imageTag, arch string) (string, error) {
	v, err := etcdModuleVersion(imageTag)
	if err != nil {
		return "", err
	}
	const server, ctl = "go.etcd.io/etcd/server/v3", "go.etcd.io/etcd/etcdctl/v3"
	b := GoBuild{
		Name:     "etcd-" + v,
		Requires: map[string]string{server: v, ctl: v},
		Packages: []string{server, ctl},
		Binaries: map[string]string{server: "etcd"},
		Arch:     arch,
	}
	gover, err := goVersion()
	if err != nil {
		return "", err
	}
	// The proxy is asked only on a miss, so warm calls stay offline and fast.
	dir, err := c.DoLocked(ctx, "go", b.Name+"-"+b.Arch, Key(goBuildRecipe, "etcd", gover, b), func(ctx context.Context, dir string) error {
		if _, err := c.moduleInfo(ctx, server, v); err != nil {
			return err
		}
		if _, err := c.moduleInfo(ctx, ctl, v); err != nil {
			c.Log.Infof("etcd %s: building without etcdctl: %v", v, err)
			delete(b.Requires, ctl)
			b.Packages = slices.DeleteFunc(b.Packages, func(p string) bool { return p == ctl })
		}
		return c.goBuildInto(ctx, b, dir)
	})
	if err != nil {
		return "", fmt.Errorf("build etcd %s linux/%s: %w", v, arch, err)
	}
	return dir, nil
}

// coreDNSModuleVersion maps a CoreDNS image tag to its module version:
// "v1.14.6" (kubeadm's) or "1.14.6" -> "v1.14.6".
func coreDNSModuleVersion(imageTag string) (string, error) {
	v := imageTag
	if !strings.HasPrefix(v, "v") {
		v = "v" + v
	}
	if !semver.IsValid(v) || semver.Canonical(v) != v || semver.Prerelease(v) != "" {
		return "", fmt.Errorf("coredns image tag %q: want vMAJOR.MINOR.PATCH (e.g. v1.14.6)", imageTag)
	}
	return v, nil
}

// CoreDNS builds coredns for the image tag kubeadm asks for (e.g. "v1.14.6")
// for linux/arch. An exact release is required: a DNS server of another
// version would silently change what a cell tests.
func (c *Cache) CoreDNS(ctx context.Context, imageTag, arch string) (string, error) {
	v, err := coreDNSModuleVersion(imageTag)
	if err != nil {
		return "", err
	}
	const mod = "github.com/coredns/coredns"
	b := GoBuild{
		Name:     "coredns-" + v,
		Requires: map[string]string{mod: v},
		Packages: []string{mod},
		Arch:     arch,
	}
	gover, err := goVersion()
	if err != nil {
		return "", err
	}
	dir, err := c.DoLocked(ctx, "go", b.Name+"-"+b.Arch, Key(goBuildRecipe, gover, b), func(ctx context.Context, dir string) error {
		// Only the exact release will do: another CoreDNS would silently
		// change what a cell tests. The error names module and version.
		if _, err := c.moduleInfo(ctx, mod, v); err != nil {
			return err
		}
		return c.goBuildInto(ctx, b, dir)
	})
	if err != nil {
		return "", fmt.Errorf("build coredns %s linux/%s: %w", v, arch, err)
	}
	return dir, nil
}

// PauseVersion is what our pause prints for -v; bump it when pause/main.go
// changes behaviour.
const PauseVersion = "1.0.0"

// Pause builds our own pause (internal/images/pause) for linux/arch from the
// repository's source, copied into a throwaway module so the repository's
// go.mod plays no part. It is keyed by the source content.
func (c *Cache) Pause(ctx context.Context, arch string) (string, error) {
	return c.buildRepoMain(ctx, "pause", PauseVersion, arch)
}
