package engine

import (
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/cnimatrix/cnimatrix/internal/calico"
	"github.com/cnimatrix/cnimatrix/internal/install"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

// configuredManifest is what a cell applies from the manifest at path: its
// objects after the scenario's image overrides and Calico options (registry,
// pool CIDR, encapsulation, MTU). The preflight audits and the source build
// names the same objects' images, so all three agree on which images the
// nodes pull. overridden counts the images the overrides replaced.
func configuredManifest(path string, cni *scenario.CNISpec) (objs []*unstructured.Unstructured, overridden int, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, fmt.Errorf("read manifest: %w", err)
	}
	objs, err = install.ParseManifest(data)
	if err != nil {
		return nil, 0, fmt.Errorf("parse %s: %w", path, err)
	}
	overridden = OverrideImages(objs, cni.ImageOverrides)
	if cni.Calico != nil {
		if objs, err = calico.ConfigureFor(objs, *cni.Calico); err != nil {
			return nil, 0, fmt.Errorf("configure %s: %w", path, err)
		}
	}
	return objs, overridden, nil
}
