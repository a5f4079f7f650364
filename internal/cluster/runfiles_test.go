package cluster

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cnimatrix/cnimatrix/internal/logx"
)

// A killed run's registry blobs and work folders go; a live run's, and a
// registry folder that names no run (`images serve`), stay.
func TestGCRunFilesRemovesOnlyDeadRuns(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	oldLocks := RunLockDir
	RunLockDir = filepath.Join(tmp, "runs")
	t.Cleanup(func() { RunLockDir = oldLocks })
	release, err := HoldRun("aaaaaa")
	if err != nil {
		t.Fatal(err)
	}
	defer release()

	out := filepath.Join(tmp, "out")
	mk := func(p string) string {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	live := []string{
		mk(filepath.Join(tmp, "cnimatrix-registry-aaaaaa-123")),
		mk(filepath.Join(out, "clusters", "cnimatrix-0123abcd-aaaaaa")),
		mk(filepath.Join(tmp, "cnimatrix-registry-4567")), // no run in its name
		mk(filepath.Join(out, "clusters", "notes")),
	}
	dead := []string{
		mk(filepath.Join(tmp, "cnimatrix-registry-bbbbbb-99")),
		mk(filepath.Join(out, "clusters", "cnimatrix-0123abcd-bbbbbb", "vm-arm64-1")),
	}
	n, err := GCRunFiles(logx.Discard(), out, false)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("removed %d folders, want 2", n)
	}
	for _, p := range live {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was removed: %v", p, err)
		}
	}
	for _, p := range dead {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s is still there", p)
		}
	}
	if _, err := GCRunFiles(logx.Discard(), out, true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(live[0]); err == nil {
		t.Errorf("--force kept the live run's blobs")
	}
}
