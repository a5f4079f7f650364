package images

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cnimatrix/cnimatrix/internal/repo"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The seed fixtures: three references of one small image in the spirit of
// Calico's pod2daemon-flexvol (an init container that copies a FlexVolume
// driver to a hostPath and exits 0), built here and served by the run's
// registry. They reproduce, offline, what broke Calico on arm64 nodes:
//
//   - FlexvolGood: an index of linux/amd64 and linux/arm64, each holding the
//     binary of its own machine.
//   - FlexvolAmd64Only: an index with a linux/amd64 entry only, as a tag
//     pushed without its arm64 image (calico 5963, 5168).
//   - FlexvolMislabeled: an index whose linux/arm64 entry (its config says
//     arm64 too) holds the x86-64 binary (calico 4256).
//
// Unlike the harness's own images they are never preloaded into a VM disk:
// the node must pull them, as a real node pulls a CNI's images, or the pull
// failure under test would not happen.
const (
	FlexvolGood       = "docker.io/cnimatrix/flexvol:good"
	FlexvolAmd64Only  = "docker.io/cnimatrix/flexvol:amd64-only"
	FlexvolMislabeled = "docker.io/cnimatrix/flexvol:mislabeled"
)

// FlexvolVersion is what the fixture program prints; bump it when
// flexvol/main.go changes behaviour.
const FlexvolVersion = "1.0.0"

// FlexvolEntrypoint is where the fixture images keep the program, and their
// entrypoint (with the argument "install").
const FlexvolEntrypoint = "/usr/local/bin/flexvol"

// flexvolRecipe changes whenever the fixture images change in a way their
// inputs do not show.
const flexvolRecipe = "flexvol-fixtures/v1"

// flexvolFixture is one reference: for each platform of its index, the
// machine whose binary the entry holds.
type flexvolFixture struct {
	ref     string
	entries [][2]string // {platform arch, binary arch}
	about   string
}

var flexvolFixtures = []flexvolFixture{
	{FlexvolGood, [][2]string{{"amd64", "amd64"}, {"arm64", "arm64"}}, "multi-arch, each entry with its own machine's binary"},
	{FlexvolAmd64Only, [][2]string{{"amd64", "amd64"}}, "linux/amd64 only, no arm64 entry (like calico 5963)"},
	{FlexvolMislabeled, [][2]string{{"amd64", "amd64"}, {"arm64", "amd64"}}, "linux/arm64 entry holds the x86-64 binary (like calico 4256)"},
}

// FixtureRefs lists the seed fixtures' references.
func FixtureRefs() []string {
	out := make([]string, 0, len(flexvolFixtures))
	for _, f := range flexvolFixtures {
		out = append(out, f.ref)
	}
	return out
}

// FixtureRef returns the seed fixture that ref names (in any spelling
// Docker accepts), as FlexvolImages keys it, or "".
func FixtureRef(ref string) string {
	c, err := CanonicalRef(ref)
	if err != nil {
		return ""
	}
	for _, f := range flexvolFixtures {
		if fc, _ := CanonicalRef(f.ref); fc == c {
			return f.ref
		}
	}
	return ""
}

// Flexvol builds the fixture program (internal/images/flexvol) for
// linux/arch and returns the directory holding the binary "flexvol".
func (c *Cache) Flexvol(ctx context.Context, arch string) (string, error) {
	return c.buildRepoMain(ctx, "flexvol", FlexvolVersion, arch)
}

// buildRepoMain builds the main package internal/images/<name> of this
// repository for linux/arch, its sources copied into a throwaway module so
// the repository's go.mod plays no part, with main.version set. It returns
// the directory holding the binary <name>; the build is keyed by the
// source content.
func (c *Cache) buildRepoMain(ctx context.Context, name, version, arch string) (string, error) {
	files, err := repoMainFiles(filepath.Join("internal", "images", name), name)
	if err != nil {
		return "", fmt.Errorf("build %s: %w", name, err)
	}
	dir, err := c.GoBuild(ctx, GoBuild{
		Name:     name + "-" + version,
		Packages: []string{BuildModule + "/" + name},
		Files:    files,
		Arch:     arch,
		LDFlags:  []string{"-X=main.version=" + version},
	})
	if err != nil {
		return "", fmt.Errorf("build %s linux/%s: %w", name, arch, err)
	}
	return dir, nil
}

// repoMainFiles reads the non-test Go files of a directory of the
// repository as GoBuild.Files under prefix.
func repoMainFiles(rel, prefix string) (map[string]string, error) {
	root, err := repo.Root()
	if err != nil {
		return nil, err
	}
	srcDir := filepath.Join(root, rel)
	entries, err := os.ReadDir(srcDir)
	if err != nil {
		return nil, fmt.Errorf("read sources: %w", err)
	}
	files := map[string]string{}
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(srcDir, n))
		if err != nil {
			return nil, err
		}
		files[prefix+"/"+n] = string(data)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no Go sources in %s", srcDir)
	}
	return files, nil
}

// FlexvolImages builds (or finds in the store) the seed fixtures and returns
// them by reference. Each is an index; see FlexvolGood and its siblings.
func (c *Cache) FlexvolImages(ctx context.Context) (map[string]v1.ImageIndex, error) {
	bins := map[string]string{} // arch -> binary path
	for _, arch := range []string{"amd64", "arm64"} {
		dir, err := c.Flexvol(ctx, arch)
		if err != nil {
			return nil, err
		}
		bins[arch] = filepath.Join(dir, "flexvol")
	}
	out := map[string]v1.ImageIndex{}
	for _, f := range flexvolFixtures {
		var binKeys []string
		for _, e := range f.entries {
			fi, err := os.Stat(bins[e[1]])
			if err != nil {
				return nil, fmt.Errorf("fixture %s: %w", f.ref, err)
			}
			// The binary lies in a cache entry named by its build key, so
			// path and size identify its content.
			binKeys = append(binKeys, fmt.Sprintf("%s=%s:%d", e[0], bins[e[1]], fi.Size()))
		}
		key := Key(flexvolRecipe, f.ref, binKeys, FlexvolEntrypoint, f.about)
		obj, err := c.CachedImage(ctx, f.ref, key, func(ctx context.Context) (ImageOrIndex, error) {
			return flexvolIndex(f, bins)
		})
		if err != nil {
			return nil, err
		}
		idx, ok := obj.(v1.ImageIndex)
		if !ok {
			return nil, fmt.Errorf("fixture %s: store holds %T, not an index", f.ref, obj)
		}
		out[f.ref] = idx
	}
	return out, nil
}

func flexvolIndex(f flexvolFixture, bins map[string]string) (v1.ImageIndex, error) {
	var imgs []v1.Image
	for _, e := range f.entries {
		platformArch, binArch := e[0], e[1]
		b, err := os.ReadFile(bins[binArch])
		if err != nil {
			return nil, fmt.Errorf("fixture %s: %w", f.ref, err)
		}
		l, err := LayerFromFiles(LayerFiles{strings.TrimPrefix(FlexvolEntrypoint, "/"): {Mode: 0o755, Content: b}})
		if err != nil {
			return nil, fmt.Errorf("fixture %s: %w", f.ref, err)
		}
		// NewImage writes platformArch into the config, so a mislabeled
		// entry claims arm64 in the index and in its config alike, as a
		// wrong binary copied into an arm64 build does.
		img, err := NewImage(platformArch, []v1.Layer{l}, v1.Config{
			Entrypoint: []string{FlexvolEntrypoint, "install"},
			Env:        []string{workloadPath},
			Labels: map[string]string{
				"org.opencontainers.image.title":       "cnimatrix flexvol seed fixture",
				"org.opencontainers.image.description": f.about,
				"org.opencontainers.image.version":     FlexvolVersion,
			},
		})
		if err != nil {
			return nil, fmt.Errorf("fixture %s: %w", f.ref, err)
		}
		imgs = append(imgs, img)
	}
	idx, err := NewIndex(imgs...)
	if err != nil {
		return nil, fmt.Errorf("fixture %s: %w", f.ref, err)
	}
	return idx, nil
}
