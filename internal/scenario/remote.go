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

// LockPath is the user's trust-on-first-use pins (catalog.Lock); "" is
// catalog.DefaultLockPath().
var LockPath string

// remoteManifest resolves a catalog version whose manifests are downloaded
// (Calico) to one local file, from the cache only: loading a scenario never
// touches the network, and a run applies only pinned bytes: the catalog's
// pins, or the user's trust-on-first-use lock for files the catalog does
// not pin (provenance says which: catalog.PinCatalog or
// catalog.PinTrustedOnFirstUse). Both "not pinned" and "not cached" say
// what command fixes them.
func remoteManifest(cni string, cv *catalog.CNIVersion, operator bool) (path, provenance string, err error) {
	lockPath := LockPath
	if lockPath == "" {
		lockPath = catalog.DefaultLockPath()
	}
	lock, err := catalog.LoadLock(lockPath)
	if err != nil {
		return "", "", err
	}
	files := cv.Remote
	if operator {
		if len(cv.Operator) == 0 {
			return "", "", fmt.Errorf("%s %s has no operator install in the catalog (operator installs start at v3.15); use cni.calico.install: manifest", cni, cv.Version)
		}
		files = cv.Operator
	}
	c := manifestcache.New(ManifestCacheDir)
	var parts []manifestcache.Result
	var unpinned, missing []string
	provenance = catalog.PinCatalog
	for _, f := range files {
		pin, from := lock.Pin(f)
		if pin == "" {
			unpinned = append(unpinned, f.URL)
			continue
		}
		if from == catalog.PinTrustedOnFirstUse {
			provenance = from
		}
		r, err := c.Cached(f.URL, pin)
		if errors.Is(err, manifestcache.ErrNotCached) {
			missing = append(missing, f.URL)
			continue
		}
		if err != nil {
			return "", "", fmt.Errorf("%s %s: %w", cni, cv.Version, err)
		}
		parts = append(parts, r)
	}
	switch {
	case len(unpinned) > 0:
		return "", "", fmt.Errorf("%s %s: manifest not pinned in %s nor in %s (%s): a run applies only manifests whose sha256 is pinned; trust the current files with `cnimatrix catalog update --lock %s`, or pin them in the catalog with `cnimatrix catalog update --write` (both need the internet), or give cni.manifests a local file",
			cni, cv.Version, catalog.CalicoFile, lockPath, strings.Join(unpinned, ", "), cv.Version)
	case len(missing) > 0:
		return "", "", fmt.Errorf("%s %s: manifest not in the manifest cache %s (%s): download it with `cnimatrix catalog fetch %s` (needs the internet)",
			cni, cv.Version, c.Dir, strings.Join(missing, ", "), cv.Version)
	}
	p, err := c.Join(parts)
	if err != nil {
		return "", "", fmt.Errorf("%s %s: %w", cni, cv.Version, err)
	}
	return p, provenance, nil
}
