package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"github.com/cnimatrix/cnimatrix/internal/logx"
)

// RegistryTempName is the os.MkdirTemp pattern of run runID's registry
// blob folder: the run ID in the name is how gc tells a dead run's blobs
// from a live run's (or from `cnimatrix images serve`, which has none).
func RegistryTempName(runID string) string { return "cnimatrix-registry-" + runID + "-" }

// registryDirRe is a run's registry folder: RegistryTempName plus the
// digits os.MkdirTemp adds.
var registryDirRe = regexp.MustCompile(`^cnimatrix-registry-([0-9a-f]{6})-[0-9]+$`)

// GCRunFiles removes what runs that are no longer alive left on disk when
// they were killed (a killed run cannot clean up): their registry's blobs
// in $TMPDIR, and their clusters' work folders (kubeconfigs, VM overlay
// disks) under out/clusters. A live run's files stay unless force is set.
func GCRunFiles(log *logx.Logger, out string, force bool) (removed int, err error) {
	var errs []error
	remove := func(path, run, what string) {
		if !force && RunLive(run) {
			log.Infof("kept %s %s: run %s is in progress", what, path, run)
			return
		}
		done := log.Phase(fmt.Sprintf("delete %s %s", what, path))
		err := os.RemoveAll(path)
		done(err)
		if err != nil {
			errs = append(errs, err)
			return
		}
		removed++
	}
	tmp, err := os.ReadDir(os.TempDir())
	if err != nil {
		errs = append(errs, fmt.Errorf("gc registry blobs: %w", err))
	}
	for _, d := range tmp {
		if m := registryDirRe.FindStringSubmatch(d.Name()); m != nil && d.IsDir() {
			remove(filepath.Join(os.TempDir(), d.Name()), m[1], "registry blobs")
		}
	}
	if out != "" {
		dir := filepath.Join(out, "clusters")
		work, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("gc work folders: %w", err))
		}
		for _, d := range work {
			if run := RunOf(d.Name()); run != "" && d.IsDir() {
				remove(filepath.Join(dir, d.Name()), run, "work folder")
			}
		}
	}
	return removed, errors.Join(errs...)
}
