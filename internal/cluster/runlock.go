package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// RunLockDir holds one lock file per run in progress; the run holds an
// exclusive flock on its file for as long as it lives, so a run that was
// killed releases it with its process, whatever it left behind.
var RunLockDir = filepath.Join(os.TempDir(), "cnimatrix-runs")

// HoldRun marks run runID as in progress until release is called (or the
// process ends): `cnimatrix gc` leaves what such a run made alone.
func HoldRun(runID string) (release func(), err error) {
	if err := os.MkdirAll(RunLockDir, 0o755); err != nil {
		return nil, fmt.Errorf("run lock: %w", err)
	}
	path := filepath.Join(RunLockDir, runID+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("run lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("run lock %s: held by another process: %w", path, err)
	}
	_ = f.Truncate(0)
	fmt.Fprintf(f, "pid %d\n", os.Getpid())
	return func() {
		_ = os.Remove(path)
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// RunLive reports whether run runID is in progress: a process holds its
// lock. A lock file nobody holds is a run that ended without cleaning up;
// it is removed.
func RunLive(runID string) bool {
	path := filepath.Join(RunLockDir, runID+".lock")
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	_ = os.Remove(path)
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

// RunOf is the run ID in the name of something a run made: clusters are
// cnimatrix-<cell hash>-<run>, their nodes and VMs <cluster>-<role or
// arch>-..., the run's network cnimatrix-net-<run>. "" when name is not
// one of those.
func RunOf(name string) string {
	rest, ok := strings.CutPrefix(name, NamePrefix)
	if !ok {
		return ""
	}
	parts := strings.Split(rest, "-")
	if len(parts) < 2 {
		return ""
	}
	return parts[1]
}
