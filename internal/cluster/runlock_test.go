package cluster

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestRunOf(t *testing.T) {
	for name, want := range map[string]string{
		"cnimatrix-e88adeb3-732309":               "732309",
		"cnimatrix-e88adeb3-732309-control-plane": "732309",
		"cnimatrix-e40db100-e399d6-arm64-1":       "e399d6",
		"cnimatrix-net-732309":                    "732309",
		"kind-control-plane":                      "",
		"cnimatrix-x":                             "",
	} {
		if got := RunOf(name); got != want {
			t.Errorf("RunOf(%q) = %q, want %q", name, got, want)
		}
	}
}

// A run holds its lock while it lives; another process sees it live, and
// not after it released it or died.
func TestRunLock(t *testing.T) {
	RunLockDir = t.TempDir()
	release, err := HoldRun("abc123")
	if err != nil {
		t.Fatal(err)
	}
	if !liveFromAnotherProcess(t, "abc123") {
		t.Error("a held run is not live for another process")
	}
	release()
	if liveFromAnotherProcess(t, "abc123") || RunLive("abc123") {
		t.Error("a released run is live")
	}
	// A lock file left by a killed run: not live, and removed.
	if err := os.WriteFile(filepath.Join(RunLockDir, "dead00.lock"), []byte("pid 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if RunLive("dead00") {
		t.Error("a lock nobody holds is live")
	}
	if _, err := os.Stat(filepath.Join(RunLockDir, "dead00.lock")); !os.IsNotExist(err) {
		t.Errorf("stale lock not removed: %v", err)
	}
}

// liveFromAnotherProcess asks flock(1), as a gc in another process would,
// whether the lock is held.
func liveFromAnotherProcess(t *testing.T, runID string) bool {
	t.Helper()
	if _, err := exec.LookPath("flock"); err != nil {
		t.Skip("no flock(1)")
	}
	err := exec.Command("flock", "-n", filepath.Join(RunLockDir, runID+".lock"), "true").Run()
	return err != nil
}
