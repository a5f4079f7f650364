package images

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/cnimatrix/cnimatrix/internal/hostcmd"
	"golang.org/x/mod/modfile"
	"golang.org/x/mod/semver"
)

// KubeBinaryNames are the Kubernetes binaries Kubernetes builds: what a kind
// node image and a kubeadm VM need.
var KubeBinaryNames = []string{
	"kubeadm", "kubelet", "kubectl",
	"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy",
}

// KubeBinaries is a directory holding KubeBinaryNames for one version and
// architecture.
type KubeBinaries struct {
	Dir, Version, Arch string

	cache *Cache // builds a host-arch kubeadm when Arch is foreign
}

// Path is the path of one binary, e.g. kb.Path("kubelet").
func (kb *KubeBinaries) Path(name string) string { return filepath.Join(kb.Dir, name) }

// kubeRecipe is bumped whenever the Kubernetes build changes what it produces.
const kubeRecipe = "kubernetes/v1"

// Kubernetes builds (or finds in the cache) the Kubernetes binaries of
// version (e.g. "v1.37.2") for linux/arch from k8s.io/kubernetes on the Go
// module proxy.
func (c *Cache) Kubernetes(ctx context.Context, version, arch string) (*KubeBinaries, error) {
	dir, err := c.kubeBuild(ctx, version, arch, KubeBinaryNames)
	if err != nil {
		return nil, err
	}
	return &KubeBinaries{Dir: dir, Version: version, Arch: arch, cache: c}, nil
}

// kubeEntry is the cache entry (name and key) of a Kubernetes build.
func kubeEntry(version, arch string, bins []string) (name, key string, err error) {
	gover, err := goVersion()
	if err != nil {
		return "", "", err
	}
	name = "kubernetes-" + version + "-" + arch
	if !slices.Equal(bins, KubeBinaryNames) {
		name = strings.Join(bins, "+") + "-" + version + "-" + arch
	}
	return name, Key(kubeRecipe, gover, version, arch, bins), nil
}

func (c *Cache) kubeBuild(ctx context.Context, version, arch string, bins []string) (string, error) {
	if _, err := stagingVersion(version); err != nil {
		return "", err
	}
	name, key, err := kubeEntry(version, arch, bins)
	if err != nil {
		return "", err
	}
	dir, err := c.DoLocked(ctx, "kubernetes", name, key, func(ctx context.Context, dir string) error {
		b, err := c.kubeGoBuild(ctx, version, arch, bins)
		if err != nil {
			return err
		}
		return c.goBuildInto(ctx, b, dir)
	})
	if err != nil {
		return "", fmt.Errorf("build kubernetes %s linux/%s: %w", version, arch, err)
	}
	return dir, nil
}

// kubeGoBuild reads k8s.io/kubernetes's own go.mod to learn its staging
// modules. In the repository they are replaced by ./staging directories,
// which a dependency's replace directives cannot do; the published
// k8s.io/<name> v0.Y.Z modules are the same code, so the throwaway module
// points every staging module at them.
func (c *Cache) kubeGoBuild(ctx context.Context, version, arch string, bins []string) (GoBuild, error) {
	info, err := c.moduleInfo(ctx, "k8s.io/kubernetes", version)
	if err != nil {
		return GoBuild{}, err
	}
	gomod, err := os.ReadFile(info.GoMod)
	if err != nil {
		return GoBuild{}, fmt.Errorf("read go.mod of k8s.io/kubernetes@%s: %w", version, err)
	}
	staging, err := stagingModules(info.GoMod, gomod)
	if err != nil {
		return GoBuild{}, err
	}
	sv, _ := stagingVersion(version)
	// The release time, not the build time: a rebuild of the same inputs
	// then produces the same binaries.
	buildDate, err := moduleTime(info.Info)
	if err != nil {
		return GoBuild{}, err
	}
	name := "kubernetes-" + version
	if !slices.Equal(bins, KubeBinaryNames) {
		name = strings.Join(bins, "+") + "-" + version
	}
	b := GoBuild{
		Name:     name,
		Requires: map[string]string{"k8s.io/kubernetes": version},
		Replaces: map[string]string{},
		Arch:     arch,
		LDFlags:  kubeVersionLDFlags(version, buildDate),
	}
	for _, m := range staging {
		b.Replaces[m] = m + "@" + sv
	}
	for _, bin := range bins {
		b.Packages = append(b.Packages, "k8s.io/kubernetes/cmd/"+bin)
	}
	c.Log.Debugf("k8s.io/kubernetes@%s: %d staging modules -> %s", version, len(staging), sv)
	return b, nil
}

// stagingVersion maps a Kubernetes version to the version its staging
// modules are published at: v1.37.2 -> v0.37.2.
func stagingVersion(version string) (string, error) {
	if !semver.IsValid(version) || semver.Major(version) != "v1" || semver.Build(version) != "" ||
		strings.Count(strings.TrimSuffix(version, semver.Prerelease(version)), ".") != 2 {
		return "", fmt.Errorf("kubernetes version %q: want v1.MINOR.PATCH (e.g. v1.37.2)", version)
	}
	return "v0" + strings.TrimPrefix(version, "v1"), nil
}

// stagingModules lists the modules a go.mod replaces with directories: for
// k8s.io/kubernetes those are the staging modules (k8s.io/api, ...).
func stagingModules(file string, gomod []byte) ([]string, error) {
	f, err := modfile.Parse(file, gomod, nil)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", file, err)
	}
	var mods []string
	for _, r := range f.Replace {
		if r.New.Version == "" && modfile.IsDirectoryPath(r.New.Path) && r.Old.Version == "" {
			mods = append(mods, r.Old.Path)
		}
	}
	if len(mods) == 0 {
		return nil, fmt.Errorf("%s: no staging modules (no directory replacements) found", file)
	}
	slices.Sort(mods)
	return mods, nil
}

// moduleTime reads the publication time from a module's .info file.
func moduleTime(infoFile string) (string, error) {
	data, err := os.ReadFile(infoFile)
	if err != nil {
		return "", fmt.Errorf("read module info: %w", err)
	}
	var info struct{ Time string }
	if err := json.Unmarshal(data, &info); err != nil || info.Time == "" {
		return "", fmt.Errorf("module info %s has no time (err %v)", infoFile, err)
	}
	return info.Time, nil
}

// kubeVersionLDFlags stamps the version the way Kubernetes' own build
// (hack/lib/version.sh) does; without it binaries report
// v0.0.0-master+$Format:%H$ and kubeadm cannot tell which images belong to
// it. The git commit is not known from the module proxy, so it is left
// empty; "archive" is upstream's tree state for builds from a source archive.
func kubeVersionLDFlags(version, buildDate string) []string {
	core := strings.TrimPrefix(strings.TrimSuffix(version, semver.Prerelease(version)), "v")
	parts := strings.SplitN(core, ".", 3)
	vars := [][2]string{
		{"gitVersion", version},
		{"gitMajor", parts[0]},
		{"gitMinor", parts[1]},
		{"gitCommit", ""},
		{"gitTreeState", "archive"},
		{"buildDate", buildDate},
	}
	var flags []string
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		for _, v := range vars {
			flags = append(flags, fmt.Sprintf("-X=%s.%s=%s", pkg, v[0], v[1]))
		}
	}
	return flags
}

// HostKubeadm returns a kubeadm of version that runs on this machine: the
// one of a cached full host-arch build if there is one, else a kubeadm-only
// build (~1.5 min cold instead of ~6 for everything).
func (c *Cache) HostKubeadm(ctx context.Context, version string) (string, error) {
	name, key, err := kubeEntry(version, runtime.GOARCH, KubeBinaryNames)
	if err != nil {
		return "", err
	}
	if dir, ok := c.Lookup("kubernetes", name, key); ok {
		return filepath.Join(dir, "kubeadm"), nil
	}
	dir, err := c.kubeBuild(ctx, version, runtime.GOARCH, []string{"kubeadm"})
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "kubeadm"), nil
}

// ControlPlaneImages asks kubeadm which images a control plane of kb.Version
// runs (e.g. registry.k8s.io/kube-apiserver:v1.37.2, .../coredns/coredns:
// v1.14.6, .../pause:3.10.2, .../etcd:3.7.0-0), so that nothing here has to
// keep its own table of them.
func (kb *KubeBinaries) ControlPlaneImages(ctx context.Context) ([]string, error) {
	kubeadm := kb.Path("kubeadm")
	if kb.Arch != runtime.GOARCH {
		if kb.cache == nil {
			return nil, fmt.Errorf("kubeadm %s is linux/%s and no cache to build a host one", kb.Version, kb.Arch)
		}
		var err error
		if kubeadm, err = kb.cache.HostKubeadm(ctx, kb.Version); err != nil {
			return nil, err
		}
	}
	return kubeadmImages(ctx, kubeadm, kb.Version)
}

func kubeadmImages(ctx context.Context, kubeadm, version string) ([]string, error) {
	cmd := exec.CommandContext(ctx, kubeadm, "config", "images", "list", "--kubernetes-version", version)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("kubeadm %s config images list: %w: %s", version, err, hostcmd.LastLines(stderr.String(), 10))
	}
	var images []string
	for _, l := range strings.Split(stdout.String(), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			images = append(images, l)
		}
	}
	if len(images) == 0 {
		return nil, fmt.Errorf("kubeadm %s config images list printed no images", version)
	}
	return images, nil
}
