package images

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/cnimatrix/cnimatrix/internal/repo"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// FlannelVersion is the flannel release whose Go packages our flanneld is
// built from (fixtures/cni/flannel/flanneld/go.mod requires exactly this) and
// the tag of the offline CNI's image.
const FlannelVersion = "v0.28.10"

// FlannelImageRef is the image the offline CNI's manifest
// (fixtures/cni/flannel/kube-flannel.yaml) runs.
const FlannelImageRef = "docker.io/cnimatrix/flannel:" + FlannelVersion

// FlannelRebuild is a second build of the same flannel sources, told apart by
// the version linked into flanneld (it logs it at start) and by its image
// tag: upgrade-path cells upgrade from FlannelVersion to it offline, the way
// a user upgrades from one CNI release to the next. Only the link step
// differs, so it costs seconds once the first build is in Go's cache.
const FlannelRebuild = FlannelVersion + "-rebuild"

// FlannelRebuildRef is the image of FlannelRebuild, which
// fixtures/cni/flannel/kube-flannel-rebuild.yaml runs.
const FlannelRebuildRef = "docker.io/cnimatrix/flannel:" + FlannelRebuild

// flannelBuilds are the versions Flanneld can link.
var flannelBuilds = map[string]string{FlannelImageRef: FlannelVersion, FlannelRebuildRef: FlannelRebuild}

// FlannelBuildFor returns the flannel build version an image reference (in
// any spelling Docker accepts) names, or "" when it is not one of ours.
func FlannelBuildFor(ref string) string {
	c, err := CanonicalRef(ref)
	if err != nil {
		return ""
	}
	for r, v := range flannelBuilds {
		if rc, _ := CanonicalRef(r); rc == c {
			return v
		}
	}
	return ""
}

// Where the flannel sources live in the repository.
var (
	flanneldModuleDir  = filepath.Join("fixtures", "cni", "flannel", "flanneld")
	flannelEntrypoint  = filepath.Join("fixtures", "cni", "flannel", "image", "entrypoint.sh")
	flannelManifestRel = filepath.Join("fixtures", "cni", "flannel", "kube-flannel.yaml")
)

// FlannelManifestPath is the offline CNI's manifest in the source tree.
func FlannelManifestPath() (string, error) {
	root, err := repo.Root()
	if err != nil {
		return "", fmt.Errorf("flannel manifest: %w", err)
	}
	return filepath.Join(root, flannelManifestRel), nil
}

// flanneldRecipe is bumped whenever the way flanneld is built changes, so
// binaries of an older recipe are not reused.
const flanneldRecipe = "flanneld/v1"

// Flanneld builds our flanneld (the module in fixtures/cni/flannel/flanneld,
// which has its own go.mod and go.sum so flannel's dependency tree stays out
// of the main module) for linux/arch and returns the binary's path. It is
// cached by the module's content (go.mod, go.sum, *.go) and the Go version.
func (c *Cache) Flanneld(ctx context.Context, arch string) (binPath string, err error) {
	return c.flanneld(ctx, arch, FlannelVersion)
}

// flanneld builds flanneld with version linked in (FlannelVersion or
// FlannelRebuild).
func (c *Cache) flanneld(ctx context.Context, arch, version string) (binPath string, err error) {
	if !archRe.MatchString(arch) {
		return "", fmt.Errorf("build flanneld: invalid arch %q", arch)
	}
	root, err := repo.Root()
	if err != nil {
		return "", fmt.Errorf("build flanneld: %w", err)
	}
	modDir := filepath.Join(root, flanneldModuleDir)
	sums, err := flanneldSourceSums(modDir)
	if err != nil {
		return "", fmt.Errorf("build flanneld: %w", err)
	}
	gover, err := goVersion()
	if err != nil {
		return "", fmt.Errorf("build flanneld: %w", err)
	}
	key := Key(flanneldRecipe, gover, version, arch, sums)
	dir, err := c.DoLocked(ctx, "go", "flanneld-"+version+"-"+arch, key, func(ctx context.Context, out string) (err error) {
		done := c.Log.Phase(fmt.Sprintf("go build flanneld %s linux/%s", version, arch))
		defer func() { done(err) }()
		stop := c.heartbeat("go build flanneld linux/" + arch)
		defer stop()
		// Built in place: -mod=readonly makes the committed go.sum the only
		// source of versions and keeps the build from editing the tree.
		_, err = c.runGo(ctx, modDir, flanneldBuildEnv(arch),
			"build", "-trimpath",
			"-ldflags=-s -w -X github.com/flannel-io/flannel/pkg/version.Version="+version,
			"-o", filepath.Join(out, "flanneld"), ".")
		return err
	})
	if err != nil {
		return "", fmt.Errorf("build flanneld %s linux/%s: %w", version, arch, err)
	}
	return filepath.Join(dir, "flanneld"), nil
}

// flanneldBuildEnv pins what decides the binary, so a user's GOFLAGS, GOWORK
// or GOAMD64 cannot leak into cached binaries (these win over os.Environ in
// runGo since later entries take precedence).
func flanneldBuildEnv(arch string) []string {
	return []string{
		"GOOS=linux",
		"GOARCH=" + arch,
		"CGO_ENABLED=0",
		"GOFLAGS=-mod=readonly -buildvcs=false",
		"GOWORK=off",
		"GOTOOLCHAIN=local",
		"GOAMD64=v1",
		"GOARM64=v8.0",
	}
}

// flanneldSourceSums maps each file that decides the build (go.mod, go.sum,
// *.go) to the SHA-256 of its content.
func flanneldSourceSums(modDir string) (map[string]string, error) {
	entries, err := os.ReadDir(modDir)
	if err != nil {
		return nil, fmt.Errorf("read flanneld module: %w", err)
	}
	sums := map[string]string{}
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || (n != "go.mod" && n != "go.sum" && !strings.HasSuffix(n, ".go")) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(modDir, n))
		if err != nil {
			return nil, fmt.Errorf("read flanneld module: %w", err)
		}
		h := sha256.Sum256(data)
		sums[n] = hex.EncodeToString(h[:])
	}
	for _, must := range []string{"go.mod", "go.sum"} {
		if _, ok := sums[must]; !ok {
			return nil, fmt.Errorf("flanneld module %s has no %s", modDir, must)
		}
	}
	return sums, nil
}

// flannelImagePath is the PATH of the image: go-iptables finds the iptables
// binaries of the base layer through it, and the base layer brings no config.
const flannelImagePath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// FlannelImage assembles the offline CNI's image for linux/arch: base (a
// layer with a shell and the iptables tools) plus a layer with our flanneld at
// /opt/bin/flanneld and the entrypoint at /opt/bin/entrypoint.sh, which is
// the image's entrypoint. The manifest passes flanneld's flags as args.
func (c *Cache) FlannelImage(ctx context.Context, arch string, base v1.Layer) (v1.Image, error) {
	return c.flannelImage(ctx, arch, base, FlannelVersion)
}

func (c *Cache) flannelImage(ctx context.Context, arch string, base v1.Layer, version string) (v1.Image, error) {
	if base == nil {
		return nil, fmt.Errorf("flannel image linux/%s: no base layer", arch)
	}
	bin, err := c.flanneld(ctx, arch, version)
	if err != nil {
		return nil, err
	}
	layer, err := c.flannelLayer(ctx, arch, bin, version)
	if err != nil {
		return nil, fmt.Errorf("flannel image linux/%s: %w", arch, err)
	}
	img, err := NewImage(arch, []v1.Layer{base, layer}, v1.Config{
		Entrypoint: []string{"/opt/bin/entrypoint.sh"},
		Env:        []string{flannelImagePath},
		WorkingDir: "/",
		Labels: map[string]string{
			"org.opencontainers.image.title":   "cnimatrix flannel (offline CNI)",
			"org.opencontainers.image.version": version,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("flannel image linux/%s: %w", arch, err)
	}
	return img, nil
}

// flannelLayer is the layer of /opt/bin/{flanneld,entrypoint.sh}, cached by
// the content of both.
func (c *Cache) flannelLayer(ctx context.Context, arch, flanneld, version string) (v1.Layer, error) {
	root, err := repo.Root()
	if err != nil {
		return nil, err
	}
	script, err := os.ReadFile(filepath.Join(root, flannelEntrypoint))
	if err != nil {
		return nil, fmt.Errorf("read entrypoint: %w", err)
	}
	fi, err := os.Stat(flanneld)
	if err != nil {
		return nil, err
	}
	// The flanneld path lies inside a cache entry named by its source key,
	// so it identifies the binary's content.
	scriptSum := sha256.Sum256(script)
	key := Key(ociLayerRecipe, "flannel", arch, flanneld, fi.Size(), hex.EncodeToString(scriptSum[:]))
	return c.ociCachedLayer(ctx, "flannel-"+version+"-"+arch, key, func(ctx context.Context, w io.Writer) error {
		tw := tar.NewWriter(w)
		small := LayerFiles{
			"opt/":                  {Mode: os.ModeDir | 0o755},
			"opt/bin/":              {Mode: os.ModeDir | 0o755},
			"opt/bin/entrypoint.sh": {Mode: 0o755, Content: script},
		}
		if err := ociWriteFiles(tw, small, ""); err != nil {
			return err
		}
		hdr := &tar.Header{Name: "opt/bin/flanneld", Mode: 0o755, ModTime: ociEpoch, Format: tar.FormatPAX}
		if err := ociTarFile(tw, hdr, flanneld, fi.Size()); err != nil {
			return err
		}
		return tw.Close()
	})
}

// FlannelIndex is the multi-arch flannel image (FlannelImageRef): one
// FlannelImage per arch on that arch's iptables base layer.
func (c *Cache) FlannelIndex(ctx context.Context, arches []string) (v1.ImageIndex, error) {
	return c.FlannelBuildIndex(ctx, FlannelVersion, arches)
}

// FlannelBuildIndex is FlannelIndex for a build version of flannelBuilds.
func (c *Cache) FlannelBuildIndex(ctx context.Context, version string, arches []string) (v1.ImageIndex, error) {
	known := false
	for _, v := range flannelBuilds {
		known = known || v == version
	}
	if !known {
		return nil, fmt.Errorf("flannel build %q: not one cnimatrix builds (%s, %s)", version, FlannelVersion, FlannelRebuild)
	}
	var perArch []v1.Image
	for _, a := range arches {
		base, err := c.IptablesBaseLayer(ctx, a)
		if err != nil {
			return nil, fmt.Errorf("iptables base for %s: %w", a, err)
		}
		img, err := c.flannelImage(ctx, a, base, version)
		if err != nil {
			return nil, fmt.Errorf("flannel %s image for %s: %w", version, a, err)
		}
		perArch = append(perArch, img)
	}
	idx, err := NewIndex(perArch...)
	if err != nil {
		return nil, fmt.Errorf("flannel index: %w", err)
	}
	return idx, nil
}
