package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/calicodata"
	"github.com/cnimatrix/cnimatrix/internal/catalog"
	"github.com/cnimatrix/cnimatrix/internal/manifestcache"
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
