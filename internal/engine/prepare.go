package engine

import (
	"context"
	"fmt"
	"maps"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cnimatrix/cnimatrix/internal/images"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
	"github.com/cnimatrix/cnimatrix/qemu"
)

// Prepare builds (or finds in the cache) every image the scenario's cells
// need and pushes the pulled ones into the run's registry. It is the
// "images" phase done once for all cells.
func (e *Engine) Prepare(ctx context.Context, s *scenario.Scenario) error {
	runs := false
	for _, c := range s.Cells() {
		if s.SkipFor(c) != nil {
			continue // no cluster: no node image, no disk
		}
		runs = true
		if _, err := e.NodeImage(ctx, c.Kubernetes, controlPlaneArch(c)); err != nil {
			return err
		}
		if c.Provider == "qemu" {
			pre, err := e.cellImages(ctx, s)
			if err != nil {
				return err
			}
			if _, err := Disk(ctx, e.cache, c.Kubernetes, pre); err != nil {
				return err
			}
		}
	}
	if !runs {
		return nil // every cell is skipped: nothing to pull
	}
	if err := e.PushImages(ctx, s); err != nil {
		return err
	}
	return e.pushFixtures(ctx, s)
}

// ImageArches are the platforms of every workload and offline-CNI image.
var ImageArches = []string{"amd64", "arm64"}

// NodeImage returns the node image for a Kubernetes version, building it once.
func (e *Engine) NodeImage(ctx context.Context, k8sVersion, arch string) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	key := k8sVersion + "/" + arch
	if ref, ok := e.nodeImages[key]; ok {
		return ref, nil
	}
	ref, err := e.cache.NodeImage(ctx, k8sVersion, arch)
	if err != nil {
		return "", fmt.Errorf("node image for Kubernetes %s/%s: %w", k8sVersion, arch, err)
	}
	e.nodeImages[key] = ref
	return ref, nil
}

// PushImages builds the workload images and the offline CNI's images (for
// every arch of ImageArches), and the CNI's images when the scenario builds
// them from source, and pushes them into the registry.
func (e *Engine) PushImages(ctx context.Context, s *scenario.Scenario) error {
	done := e.log.Phase(fmt.Sprintf("images for %v", ImageArches))
	err := e.pushImages(ctx, s)
	done(err)
	return err
}

// cellImages are the images the harness provides for a scenario's cells:
// HarnessImages plus, when the scenario asks for them, the CNI's images
// built from source. A VM node's disk has them preloaded.
func (e *Engine) cellImages(ctx context.Context, s *scenario.Scenario) (map[string]v1.ImageIndex, error) {
	want, err := HarnessImages(ctx, e.cache, s.CNI.Name)
	if err != nil {
		return nil, err
	}
	built, err := sourceImages(ctx, e.cache, s)
	if err != nil {
		return nil, err
	}
	maps.Copy(want, built)
	return want, nil
}

// HarnessImages builds (or finds cached) the images cnimatrix itself
// provides for a scenario whose CNI is cni, by reference: the workloads the
// checks deploy and, for the offline CNI, its images. They are always
// multi-arch indexes, as real images are: a mixed cluster pulls both
// entries, and the cached store keeps one content per reference whatever
// the cell's arch.
func HarnessImages(ctx context.Context, cache *images.Cache, cni string) (map[string]v1.ImageIndex, error) {
	want := map[string]v1.ImageIndex{}
	workloads, err := cache.WorkloadImages(ctx, ImageArches)
	if err != nil {
		return nil, fmt.Errorf("workload images: %w", err)
	}
	for ref, idx := range workloads {
		want[ref] = idx
	}
	if cni == "flannel" {
		idx, err := cache.FlannelIndex(ctx, ImageArches)
		if err != nil {
			return nil, err
		}
		want[images.FlannelImageRef] = idx
	}
	return want, nil
}

// Disk builds (or finds cached) the QEMU arm64 node disk for a Kubernetes
// version, with the harness's images (preload) in it: pulling and
// unpacking them under TCG costs each VM minutes.
func Disk(ctx context.Context, cache *images.Cache, k8sVersion string, preload map[string]v1.ImageIndex) (*qemu.Disk, error) {
	return qemu.BuildDisk(ctx, cache, k8sVersion, qemu.DiskOptions{Preload: preload})
}

func (e *Engine) pushImages(ctx context.Context, s *scenario.Scenario) error {
	want, err := e.cellImages(ctx, s)
	if err != nil {
		return err
	}
	for ref, idx := range want {
		if err := e.pushOnce(ctx, ref, func() (v1.ImageIndex, error) { return idx, nil }); err != nil {
			return err
		}
	}
	return nil
}
