package e2e

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/cnimatrix/cnimatrix/internal/calicodata"
	"github.com/cnimatrix/cnimatrix/internal/catalog"
	"github.com/cnimatrix/cnimatrix/internal/images"
	"github.com/cnimatrix/cnimatrix/internal/manifestcache"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

// fetchCalicoManifests puts the pinned files of every catalog release the
// upstream Calico data holds into the manifest cache, through that data as
// a file:// mirror, as a user without internet does with `cnimatrix catalog
// fetch` and CNIMATRIX_MANIFEST_MIRROR: each is checked against its pin.
// Without the data nothing is fetched, and a scenario that needs a release
// fails to load naming it.
func fetchCalicoManifests(t *testing.T, root string) {
	d, err := calicodata.Find(root)
	if err != nil {
		t.Logf("no Calico manifests fetched: %v", err)
		return
	}
	cal, err := catalog.LoadCalico()
	if err != nil {
		t.Fatal(err)
	}
	cache := manifestcache.New("")
	cache.Mirror = "file://" + d.MirrorDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n := 0
	for _, tag := range d.Tags() {
		v, err := cal.Version(tag)
		if err != nil {
			continue
		}
		for _, f := range v.Files() {
			if _, err := cache.Fetch(ctx, f.URL, f.SHA256); err != nil {
				t.Fatalf("fetch %s %s from %s: %v", tag, f.Name(), d.MirrorDir(), err)
			}
			n++
		}
	}
	t.Logf("%d pinned Calico files in the manifest cache (from %s)", n, d.MirrorDir())
}

// assertRealCalico checks what a cell of real Calico must show beyond its
// outcome: that the matrix says its images were rebuilt from source, and,
// when it passed, that Calico's own checks (Felix enforcing NetworkPolicy,
// the VXLAN device) and the arch coverage ran and passed.
func assertRealCalico(s *scenario.Scenario, res matrix.Result) {
	if s.CNI.Name != "calico" || s.CNI.Images != matrix.ImagesRebuiltFromSource {
		return
	}
	Expect(res.Images).To(Equal(matrix.ImagesRebuiltFromSource), "the matrix must say the images were rebuilt")
	Expect(res.ManifestPin).To(Equal(catalog.PinCatalog), "the upstream manifest is the catalog's pinned one")
	for _, comp := range []string{"node", "cni", "kube-controllers"} {
		Expect(res.ImageSources).To(ContainElement(matrix.ImageSource{Image: "quay.io/calico/" + comp + ":" + res.CNIVersion, Source: images.OriginRebuilt}),
			"the matrix says calico/%s was rebuilt from source", comp)
	}
	if res.Outcome != matrix.Pass {
		return
	}
	passed := map[string]bool{}
	for _, p := range res.Phases {
		passed[p.Name] = p.Outcome == matrix.Pass
	}
	for _, want := range []string{"check:CalicoNodeReady", "check:CalicoKubeControllersReady", "check:IPPool", "check:TunnelDevice", "check:NetworkPolicy", "check:CNIWorkloadArch", "check:PodToPodAcrossNodes"} {
		Expect(passed).To(HaveKeyWithValue(want, true), "a passing real Calico cell ran and passed %s", want)
	}
}
