package engine

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/images"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

// pushImported pushes every image `cnimatrix images import` stored into
// the run's registry, under the name it was imported as, before any cell
// pushes: an image the harness builds under the same name (the rebuilt
// Calico of cni.calico.images: source) replaces it for this run.
func (e *Engine) pushImported(ctx context.Context, s *images.Store) error {
	refs, err := s.Refs()
	if err != nil {
		return fmt.Errorf("imported images: %w", err)
	}
	if len(refs) == 0 {
		return nil
	}
	t0 := time.Now()
	for _, ref := range refs {
		obj, err := s.Get(ref)
		if err != nil {
			return fmt.Errorf("imported image %s: %w", ref, err)
		}
		var from string
		if d, err := s.Descriptor(ref); err == nil {
			from = d.Annotations[images.ImportedFromAnnotation]
		}
		if err := e.registry.PushAs(ctx, ref, obj, images.Origin{Source: images.OriginImported, Detail: from}); err != nil {
			return fmt.Errorf("imported image %s: %w", ref, err)
		}
		e.mu.Lock()
		e.imported = append(e.imported, ref)
		e.mu.Unlock()
	}
	e.log.Infof("imported images: %d in the registry (%s) in %s", len(refs), strings.Join(refs, ", "), time.Since(t0).Truncate(time.Millisecond))
	return nil
}

// Imported lists the imported images this run's registry serves.
func (e *Engine) Imported() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.imported)
}

// PulledThrough lists the images this run's registry fetched from an
// upstream so far ("quay.io/calico/node:v3.32.1 from https://quay.io").
func (e *Engine) PulledThrough() []string { return e.registry.Pulled() }

func describeUpstreams(u images.Upstreams) string {
	var parts []string
	for host, base := range u {
		parts = append(parts, host+" ("+base+")")
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// imageSources says where the run's registry got each image of the cell's
// manifests. An image nothing pushed and no node asked for (the cell
// stopped before its install) is left out; on an existing cluster the
// nodes pull from their own registries, so nothing is said.
func (e *Engine) imageSources(p *CellPlan) []matrix.ImageSource {
	if e.registry == nil || p.onExisting() {
		return nil
	}
	var out []matrix.ImageSource
	for _, ref := range p.imageRefs {
		if o := e.registry.OriginOf(ref); o.Source != "" {
			out = append(out, matrix.ImageSource{Image: ref, Source: o.Source, Detail: o.Detail})
		}
	}
	return out
}
