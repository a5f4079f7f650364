package engine

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cnimatrix/cnimatrix/internal/calico"
	"github.com/cnimatrix/cnimatrix/internal/images"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

// sourceImages builds the CNI's images from the release's source when the
// scenario asks for them (cni.calico.images: source), for the arches its
// clusters' nodes have, keyed by the references the configured manifest
// uses: the nodes pull them from the run's registry under the upstream
// names, so the manifest is applied as upstream wrote it (plus the
// scenario's declared edits). Images of the manifest that are not built
// (none, for calico.yaml) are left to the registry: a missing one fails the
// cell's image pull, naming it.
func sourceImages(ctx context.Context, cache *images.Cache, s *scenario.Scenario) (map[string]v1.ImageIndex, error) {
	if s.CNI.Images != matrix.ImagesRebuiltFromSource {
		return nil, nil
	}
	arches := nodeArches(s)
	out := map[string]v1.ImageIndex{}
	for _, ver := range slices.Sorted(maps.Keys(s.CNI.Sources)) {
		refs, err := configuredImages(s, ver)
		if err != nil {
			return nil, err
		}
		built, err := cache.CalicoImages(ctx, s.CNI.Sources[ver], arches)
		if err != nil {
			return nil, err
		}
		for _, ref := range refs {
			if comp := calicoComponent(ref, ver); comp != "" {
				out[ref] = built[comp]
			}
		}
	}
	return out, nil
}

// configuredImages are the images of a version's manifest after the
// scenario's edits (the registry option renames them).
func configuredImages(s *scenario.Scenario, ver string) ([]string, error) {
	path := s.CNI.Manifests[ver]
	if s.Upgrade != nil && ver == s.Upgrade.To {
		path = s.Upgrade.Manifest
	}
	objs, _, err := configuredManifest(path, &s.CNI)
	if err != nil {
		return nil, fmt.Errorf("images of %s %s: %w", s.CNI.Name, ver, err)
	}
	return calico.Images(objs), nil
}

// calicoComponent is the built component (images.CalicoComponents) an
// image reference names at a version: .../calico/<component>:<version>,
// whatever the registry; "" for any other image.
func calicoComponent(ref, version string) string {
	t, err := name.NewTag(ref, name.WeakValidation)
	if err != nil || t.TagStr() != version {
		return ""
	}
	repo := t.RepositoryStr()
	for _, c := range images.CalicoComponents {
		if repo == "calico/"+c || strings.HasSuffix(repo, "/calico/"+c) {
			return c
		}
	}
	return ""
}

// nodeArches are the arches of every node the scenario's clusters have:
// each cell's arch and its control plane's.
func nodeArches(s *scenario.Scenario) []string {
	var arches []string
	provs := dryRunProviders()
	for _, c := range s.Cells() {
		prov, err := providerByName(c.Provider, provs)
		if err != nil {
			continue // the cell is skipped: no nodes
		}
		for _, n := range prov.Layout(c.Arch, s.Nodes) {
			if !slices.Contains(arches, n.Arch) {
				arches = append(arches, n.Arch)
			}
		}
	}
	slices.Sort(arches)
	return arches
}
