package e2e

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// dockerList runs `docker <args>` and returns its output's fields.
func dockerList(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.Fields(string(out))
}

// assertNothingLeft fails when a container or network of this run, or a
// volume that did not exist before the suite, is still there.
func assertNothingLeft(t *testing.T, runID string, volumesBefore []string) {
	t.Helper()
	for _, c := range dockerList(t, "ps", "-a", "--format", "{{.Names}}") {
		if strings.Contains(c, runID) {
			t.Errorf("container %s of this run is left", c)
		}
	}
	for _, n := range dockerList(t, "network", "ls", "--format", "{{.Name}}") {
		if strings.Contains(n, runID) {
			t.Errorf("network %s of this run is left", n)
		}
	}
	for _, v := range dockerList(t, "volume", "ls", "-q") {
		if !slices.Contains(volumesBefore, v) {
			t.Errorf("volume %s appeared during the run and is left", v)
		}
	}
}
