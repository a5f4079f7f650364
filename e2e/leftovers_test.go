package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// dockerList runs `docker <args>` and returns its output's fields.
func dockerList(t tb, args ...string) []string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.Fields(string(out))
}

// assertNothingLeft fails when a container or network of this run, or a
// volume that did not exist before the suite, is still there.
func assertNothingLeft(t tb, runID string, volumesBefore []string) {
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

// taps lists the network devices cnimatrix's QEMU provider names (cmx...).
func taps(t tb) []string {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatalf("%v", err)
	}
	var out []string
	for _, i := range ifs {
		if strings.HasPrefix(i.Name, "cmx") {
			out = append(out, i.Name)
		}
	}
	return out
}

// assertNoVMLeft fails when a QEMU process of this run or a tap device
// that did not exist before the suite is still there.
func assertNoVMLeft(t tb, runID string, tapsBefore []string) {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmd, "qemu-system") && strings.Contains(cmd, runID) {
			t.Errorf("QEMU of this run is left: %s: %.200s", filepath.Dir(p), cmd)
		}
	}
	for _, tap := range taps(t) {
		if !slices.Contains(tapsBefore, tap) {
			t.Errorf("tap %s appeared during the run and is left", tap)
		}
	}
}
