package scenario

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cnimatrix/cnimatrix/internal/catalog"
	"github.com/cnimatrix/cnimatrix/internal/manifestcache"
)

// ManifestCacheDir is where downloaded manifests are looked up; "" is
// manifestcache.DefaultDir() (which follows $CNIMATRIX_CACHE).
var ManifestCacheDir string

// remoteManifest resolves a catalog version whose manifests are downloaded
// (Calico) to one local file, from the cache only: loading a scenario never
// touches the network, and a run applies only pinned bytes. Both "not
// pinned" and "not cached" say what command fixes them.
func remoteManifest(cni string, cv *catalog.CNIVersion, operator bool) (string, error) {
	files := cv.Remote
	if operator {
		if len(cv.Operator) == 0 {
			return "", fmt.Errorf("%s %s has no operator install in the catalog (operator installs start at v3.15); use cni.calico.install: manifest", cni, cv.Version)
		}
		files = cv.Operator
	}
	c := manifestcache.New(ManifestCacheDir)
	var parts []manifestcache.Result
	var unpinned, missing []string
	for _, f := range files {
		if !f.Pinned() {
			unpinned = append(unpinned, f.URL)
			continue
		}
		r, err := c.Cached(f.URL, f.SHA256)
		if errors.Is(err, manifestcache.ErrNotCached) {
			missing = append(missing, f.URL)
			continue
		}
		if err != nil {
			return "", fmt.Errorf("%s %s: %w", cni, cv.Version, err)
		}
		parts = append(parts, r)
	}
	switch {
	case len(unpinned) > 0:
		return "", fmt.Errorf("%s %s: manifest not pinned in %s (%s): a run applies only manifests whose sha256 is pinned; pin with `cnimatrix catalog update --write` (needs the internet), or give cni.manifests a local file",
			cni, cv.Version, catalog.CalicoFile, strings.Join(unpinned, ", "))
	case len(missing) > 0:
		return "", fmt.Errorf("%s %s: manifest not in the manifest cache %s (%s): download it with `cnimatrix catalog fetch %s` (needs the internet)",
			cni, cv.Version, c.Dir, strings.Join(missing, ", "), cv.Version)
	}
	p, err := c.Join(parts)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", cni, cv.Version, err)
	}
	return p, nil
}
