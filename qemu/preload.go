package qemu

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/cnimatrix/cnimatrix/internal/images"
)

// preloadSnapshotter is the snapshotter of the VM's containerd config.
const preloadSnapshotter = "overlayfs"

// preloadImages puts the pause and kube-proxy images into the disk's
// containerd store. Importing them inside the VM takes minutes under TCG,
// so the host runs a containerd whose root is the disk's /var/lib/
// containerd (own state dir and socket, no CRI) and imports there.
//
// They are unpacked here too, into the overlayfs snapshotter the VM's
// containerd uses (its snapshots are plain directories plus a metadata
// database of relative IDs, so they move with the root): unpacking
// kube-proxy under TCG took ~20 s of each VM's first container start.
func preloadImages(ctx context.Context, c *images.Cache, in *diskInputs, root, dir string) (err error) {
	archive, err := writeNodeImages(ctx, c, in, dir)
	if err != nil {
		return err
	}
	defer os.Remove(archive)

	refs := append([]string{}, in.Images...)
	for ref := range in.extra {
		refs = append(refs, ref)
	}
	return images.ImportIntoRootfs(ctx, images.RootfsImport{
		HostContainerd: in.HostContainerd, Root: root, Archive: archive, Arch: Arch, Images: refs,
		Snapshotter: in.Snapshotter,
	})
}

// writeNodeImages writes pause and kube-proxy (arm64, under kubeadm's tags)
// into a docker-archive tarball. They are made as the kind node images make
// theirs: pause alone, kube-proxy on the Debian iptables base layer so it
// runs the iptables of its image.
func writeNodeImages(ctx context.Context, c *images.Cache, in *diskInputs, dir string) (string, error) {
	iptables, err := c.IptablesBaseLayer(ctx, Arch)
	if err != nil {
		return "", err
	}
	refs := map[name.Reference]v1.Image{}
	for _, ref := range in.Images {
		tag, err := name.NewTag(ref, name.StrictValidation)
		if err != nil {
			return "", fmt.Errorf("image %q: %w", ref, err)
		}
		var (
			layers []v1.Layer
			cfg    v1.Config
			stage  = filepath.Join(dir, "stage-"+path.Base(tag.RepositoryStr()))
		)
		switch path.Base(tag.RepositoryStr()) {
		case "pause":
			if err := stageFile(filepath.Join(in.Pause, "pause"), filepath.Join(stage, "pause")); err != nil {
				return "", err
			}
			l, err := c.LayerFromDir(ctx, stage, "")
			if err != nil {
				return "", err
			}
			layers, cfg = []v1.Layer{l}, v1.Config{Entrypoint: []string{"/pause"}}
		case "kube-proxy":
			if err := stageFile(filepath.Join(in.Kube, "kube-proxy"), filepath.Join(stage, "kube-proxy")); err != nil {
				return "", err
			}
			l, err := c.LayerFromDir(ctx, stage, "usr/local/bin")
			if err != nil {
				return "", err
			}
			layers = []v1.Layer{iptables, l}
			cfg = v1.Config{
				Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
				Entrypoint: []string{"/usr/local/bin/kube-proxy"},
			}
		default:
			return "", fmt.Errorf("no recipe for image %s", ref)
		}
		img, err := images.NewImage(Arch, layers, cfg)
		if err != nil {
			return "", err
		}
		refs[tag] = img
		defer os.RemoveAll(stage)
	}
	for ref, img := range in.extra {
		tag, err := name.NewTag(ref, name.StrictValidation)
		if err != nil {
			return "", fmt.Errorf("image %q: %w", ref, err)
		}
		refs[tag] = img
	}
	out := filepath.Join(dir, "preload.tar")
	if err := tarball.MultiRefWriteToFile(out, refs); err != nil {
		return "", fmt.Errorf("write preload images: %w", err)
	}
	return out, nil
}

// stageFile hard-links src (keeping its time, so cached layers keyed by the
// listing are reused) or copies it.
func stageFile(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		return err
	}
	return os.Chtimes(dst, fi.ModTime(), fi.ModTime())
}

// preloadExtra picks the arm64 image of each DiskOptions.Preload entry.
func preloadExtra(in map[string]v1.ImageIndex) (map[string]v1.Image, error) {
	out := map[string]v1.Image{}
	for ref, idx := range in {
		if _, err := name.NewTag(ref, name.StrictValidation); err != nil {
			return nil, fmt.Errorf("preload %q: want a tagged reference: %w", ref, err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, fmt.Errorf("preload %s: %w", ref, err)
		}
		var img v1.Image
		for _, d := range im.Manifests {
			if d.Platform != nil && d.Platform.OS == "linux" && d.Platform.Architecture == Arch {
				if img, err = idx.Image(d.Digest); err != nil {
					return nil, fmt.Errorf("preload %s: %w", ref, err)
				}
				break
			}
		}
		if img == nil {
			return nil, fmt.Errorf("preload %s: no linux/%s image in its index", ref, Arch)
		}
		out[ref] = img
	}
	return out, nil
}
