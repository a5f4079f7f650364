package images

import (
	"context"
	"slices"
)

// Origin is where the run's registry got the image it serves under a name:
// what a cell's nodes ran when they pulled that name.
type Origin struct {
	// Source is one of the Origin* constants.
	Source string `json:"source"`
	// Detail says more: the upstream a pulled-through image came from.
	Detail string `json:"detail,omitempty"`
}

const (
	// OriginBuilt: cnimatrix built it (its own images, the seed fixtures).
	OriginBuilt = "built"
	// OriginRebuilt: cnimatrix built the CNI's image from the release's
	// source; a PASS on it speaks for the source, not the released image.
	OriginRebuilt = "rebuilt-from-source"
	// OriginImported: `cnimatrix images import` stored it from a file.
	OriginImported = "imported"
	// OriginPulledThrough: fetched from its upstream registry during the run.
	OriginPulledThrough = "pulled-through"
	// OriginMissing: asked for and not found (nothing pushed it and no
	// upstream had it).
	OriginMissing = "missing"
)

// PushAs is Push recording where obj came from, for OriginOf.
func (r *Registry) PushAs(ctx context.Context, upstreamRef string, obj ImageOrIndex, o Origin) error {
	if err := r.push(ctx, upstreamRef, obj); err != nil {
		return err
	}
	cref, _ := CanonicalRef(upstreamRef) // push parsed it already
	r.mu.Lock()
	r.origins[cref] = o
	r.mu.Unlock()
	return nil
}

// OriginOf says where the image the registry serves as ref came from; the
// zero Origin for a name nothing asked for and nothing pushed. A name
// pushed by this run wins over one pulled through, which wins over a miss
// (a pull-through that came later fills what was missing).
func (r *Registry) OriginOf(ref string) Origin {
	cref, err := CanonicalRef(ref)
	if err != nil {
		return Origin{}
	}
	r.mu.Lock()
	o, pushed := r.origins[cref]
	missed := slices.Contains(r.misses, cref)
	r.mu.Unlock()
	if pushed {
		return o
	}
	if r.pull != nil {
		r.pull.mu.Lock()
		base, ok := r.pull.from[cref]
		r.pull.mu.Unlock()
		if ok {
			return Origin{Source: OriginPulledThrough, Detail: base}
		}
	}
	if missed {
		return Origin{Source: OriginMissing}
	}
	return Origin{}
}
