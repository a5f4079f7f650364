package engine

import (
	"context"
	"fmt"
	"maps"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cnimatrix/cnimatrix/internal/archaudit"
	"github.com/cnimatrix/cnimatrix/internal/cluster"
	"github.com/cnimatrix/cnimatrix/internal/images"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

// Prepare builds (or finds in the cache) every image the scenario's cells
// need and pushes the pulled ones into the run's registry. It is the
// "images" step done once for all cells.
func (e *Engine) Prepare(ctx context.Context, s *scenario.Scenario) error {
	return e.PrepareCells(ctx, s, s.Cells())
}

// PrepareCells is Prepare for the cells of s that will run.
func (e *Engine) PrepareCells(ctx context.Context, s *scenario.Scenario, cells []matrix.Cell) error {
	runs := false
	for _, c := range cells {
		p := e.planCell(s, c)
		if p.provider == nil || p.skip != nil {
			continue // no cluster: no node image, no disk
		}
		runs = true
		if p.onExisting() {
			continue // its nodes are what they are
		}
		if _, err := e.prepareNodes(ctx, p); err != nil {
			return err
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

// preparedNodes is what a cell's nodes boot from.
type preparedNodes struct {
	// NodeImage is the kind node image of the control plane's arch.
	NodeImage string
	// Preload are the images put on nodes that boot from a prepared disk
	// (nil for a provider that prepares nothing); Detail says what was
	// prepared.
	Preload map[string]v1.ImageIndex
	Detail  string
}

// prepareNodes builds what a cell's nodes boot from: the kind node image
// of its control plane's arch and, for a provider that needs one (QEMU),
// the node disk with the harness's images preloaded.
func (e *Engine) prepareNodes(ctx context.Context, p *CellPlan) (preparedNodes, error) {
	var out preparedNodes
	var err error
	if out.NodeImage, err = e.NodeImage(ctx, p.Cell.Kubernetes, p.controlPlaneArch()); err != nil {
		return out, err
	}
	np, ok := p.provider.(cluster.NodePreparer)
	if !ok {
		return out, nil
	}
	if out.Preload, err = e.cellImages(ctx, p.scenario); err != nil {
		return out, err
	}
	v, err, _ := e.builds.Do("nodes|"+p.provider.Name()+"|"+p.Cell.Kubernetes+"|"+p.scenario.Path, func() (any, error) {
		return np.PrepareNodes(ctx, cluster.Spec{KubernetesVersion: p.Cell.Kubernetes, Preload: out.Preload})
	})
	if err != nil {
		return out, err
	}
	out.Detail = v.(string)
	return out, nil
}

// ImageArches are the platforms of every workload and offline-CNI image.
var ImageArches = []string{"amd64", "arm64"}

// NodeImage returns the node image for a Kubernetes version, building it once.
// Cells asking at once share one build; other builds go on beside it.
func (e *Engine) NodeImage(ctx context.Context, k8sVersion, arch string) (string, error) {
	key := k8sVersion + "/" + arch
	e.mu.Lock()
	ref, ok := e.nodeImages[key]
	e.mu.Unlock()
	if ok {
		return ref, nil
	}
	v, err, _ := e.builds.Do("node-image|"+key, func() (any, error) {
		ref, from, err := e.nodeImage(ctx, k8sVersion, arch)
		if err != nil {
			return "", fmt.Errorf("node image for Kubernetes %s/%s: %w", k8sVersion, arch, err)
		}
		e.mu.Lock()
		e.nodeImages[key], e.nodeFrom[ref] = ref, from
		e.mu.Unlock()
		return ref, nil
	})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

// nodeImage is kind's published node image when the run asks for it and
// the docker.io upstream has it, else the one built here.
func (e *Engine) nodeImage(ctx context.Context, k8sVersion, arch string) (string, matrix.ImageSource, error) {
	if e.opts.UpstreamNodeImages {
		ref := images.UpstreamNodeImage(k8sVersion)
		done := e.log.Phase("node image " + ref + " through the registry")
		err := e.registry.LoadIntoDocker(ctx, ref, arch, e.log)
		done(err)
		if err == nil {
			o := e.registry.OriginOf(ref)
			if o.Source == "" {
				o.Source = images.OriginPulledThrough
			}
			return ref, matrix.ImageSource{Image: ref, Source: o.Source, Detail: o.Detail}, nil
		}
		if ctx.Err() != nil {
			return "", matrix.ImageSource{}, err
		}
		e.log.Infof("no upstream node image for Kubernetes %s (%v): building it here", k8sVersion, err)
		ref, berr := e.cache.NodeImage(ctx, k8sVersion, arch)
		return ref, matrix.ImageSource{Image: ref, Source: images.OriginBuilt, Detail: "no " + images.UpstreamNodeImage(k8sVersion) + " upstream"}, berr
	}
	ref, err := e.cache.NodeImage(ctx, k8sVersion, arch)
	return ref, matrix.ImageSource{Image: ref, Source: images.OriginBuilt}, err
}

// nodeImageSource says where a node image came from.
func (e *Engine) nodeImageSource(ref string) *matrix.ImageSource {
	e.mu.Lock()
	defer e.mu.Unlock()
	if src, ok := e.nodeFrom[ref]; ok {
		return &src
	}
	return nil
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

func (e *Engine) pushImages(ctx context.Context, s *scenario.Scenario) error {
	want, err := HarnessImages(ctx, e.cache, s.CNI.Name)
	if err != nil {
		return err
	}
	rebuilt, err := sourceImages(ctx, e.cache, s)
	if err != nil {
		return err
	}
	for ref, idx := range want {
		if _, ok := rebuilt[ref]; ok {
			continue
		}
		if err := e.pushOnce(ctx, ref, images.OriginBuilt, func() (v1.ImageIndex, error) { return idx, nil }); err != nil {
			return err
		}
	}
	for ref, idx := range rebuilt {
		if err := e.pushOnce(ctx, ref, images.OriginRebuilt, func() (v1.ImageIndex, error) { return idx, nil }); err != nil {
			return err
		}
	}
	return nil
}

// pushFixtures pushes the seed fixtures (images.FlexvolImages) and the
// offline CNI's other builds (images.FlannelRebuild) that the
// scenario's manifests name into the run's registry, under the names the
// manifests use. Unlike the harness's images they are never preloaded: the
// nodes pull them. A manifest that cannot be read is left to the cell's
// cni-install phase to report.
func (e *Engine) pushFixtures(ctx context.Context, s *scenario.Scenario) error {
	want := map[string]string{}   // name in the manifest -> fixture
	builds := map[string]string{} // name in the manifest -> flannel build version
	for _, path := range s.ManifestPaths() {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		imgs, err := archaudit.ManifestImages(data)
		if err != nil {
			continue
		}
		for _, im := range imgs {
			ref := im.Ref
			if to, ok := s.CNI.ImageOverrides[ref]; ok {
				ref = to
			}
			if fx := images.FixtureRef(ref); fx != "" {
				want[ref] = fx
			}
			if b := images.FlannelBuildFor(ref); b != "" && b != images.FlannelVersion {
				builds[ref] = b // FlannelVersion is a harness image, pushed already
			}
		}
	}
	for ref, version := range builds {
		if err := e.pushOnce(ctx, ref, images.OriginBuilt, func() (v1.ImageIndex, error) {
			return e.cache.FlannelBuildIndex(ctx, version, ImageArches)
		}); err != nil {
			return err
		}
	}
	if len(want) == 0 {
		return nil
	}
	fixtures, err := e.cache.FlexvolImages(ctx)
	if err != nil {
		return fmt.Errorf("seed fixtures: %w", err)
	}
	for ref, fx := range want {
		if err := e.pushOnce(ctx, ref, images.OriginBuilt, func() (v1.ImageIndex, error) { return fixtures[fx], nil }); err != nil {
			return err
		}
	}
	return nil
}

// pushOnce pushes the image build makes under ref, unless this run pushed
// ref already. Cells pushing the same ref at once share one push; other
// refs are pushed beside it.
func (e *Engine) pushOnce(ctx context.Context, ref, origin string, build func() (v1.ImageIndex, error)) error {
	e.mu.Lock()
	done := e.pushed[ref]
	e.mu.Unlock()
	if done {
		return nil
	}
	_, err, _ := e.builds.Do("push|"+ref, func() (any, error) {
		idx, err := build()
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", ref, err)
		}
		if err := e.registry.PushAs(ctx, ref, idx, images.Origin{Source: origin}); err != nil {
			return nil, fmt.Errorf("push %s: %w", ref, err)
		}
		e.mu.Lock()
		e.pushed[ref] = true
		e.mu.Unlock()
		return nil, nil
	})
	return err
}
