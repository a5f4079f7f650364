package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// runBad runs the CLI and returns its exit status and every message it gave.
func runBad(t *testing.T, args ...string) (int, string) {
	t.Helper()
	code, _, stderr, err := runCLI(t, args...)
	if err != nil {
		stderr += err.Error()
	}
	return code, stderr
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "scenario.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func networks(t *testing.T) string {
	out, err := exec.Command("docker", "network", "ls", "--format", "{{.Name}}").Output()
	if err != nil {
		return "" // no Docker here: nothing can be created either
	}
	return string(out)
}

func TestRunBadInputExitsTwoAndCreatesNothing(t *testing.T) {
	before := networks(t)
	cases := map[string]struct {
		body, want string
	}{
		"malformed":       {"name: x\ncni: [\n", "scenario.yaml:"},
		"unknown field":   {"name: x\ncni:\n  name: flannel\n  versions: [v0.28.10]\nnodez: 2\n", `scenario.yaml:5: unknown field "nodez"`},
		"unknown version": {"name: x\ncni:\n  name: flannel\n  versions: [v0.28.10]\nkubernetes: [v1.12.0]\n", `scenario.yaml:5: unknown Kubernetes version "v1.12.0"`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			code, stderr := runBad(t, "run", writeFile(t, c.body))
			if code != exitBadInput {
				t.Errorf("exit %d, want %d; stderr: %s", code, exitBadInput, stderr)
			}
			if !strings.Contains(stderr, c.want) {
				t.Errorf("stderr %q lacks %q", stderr, c.want)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		code, stderr := runBad(t, "run", "/nonexistent/s.yaml")
		if code != exitBadInput || !strings.Contains(stderr, "/nonexistent/s.yaml") {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
	})
	t.Run("bad filter", func(t *testing.T) {
		code, stderr := runBad(t, "run", writeFile(t, "name: x\ncni:\n  name: flannel\n  versions: [v0.28.10]\n"), "--filter", "arch")
		if code != exitBadInput || !strings.Contains(stderr, "key=value") {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
	})
	for flag, want := range map[string]string{
		"docker.io":                "want HOST=URL",
		"docker.io=localhost:5000": "not a registry base URL",
		"gcr.io=https://gcr.io":    "the nodes pull only docker.io, quay.io, registry.k8s.io, ghcr.io",
	} {
		code, stderr := runBad(t, "run", writeFile(t, "name: x\ncni:\n  name: flannel\n  versions: [v0.28.10]\n"), "--upstream", flag)
		if code != exitBadInput || !strings.Contains(stderr, want) {
			t.Errorf("--upstream %s: exit %d, stderr %q, want %q", flag, code, stderr, want)
		}
	}
	t.Run("images import", func(t *testing.T) {
		notImage := writeFile(t, "hello")
		for args, want := range map[string]string{
			"":                       "FILE arguments, or --list alone",
			notImage:                 "not a tarball of images",
			"/nonexistent/image.tar": "no such file",
		} {
			argv := []string{"images", "import"}
			if args != "" {
				argv = append(argv, args)
			}
			code, stderr := runBad(t, argv...)
			if code != exitBadInput || !strings.Contains(stderr, want) {
				t.Errorf("images import %s: exit %d, stderr %q, want %q", args, code, stderr, want)
			}
		}
	})
	for _, flags := range [][]string{
		{"--soak", "-1s"},
		{"--soak", "10s", "--soak-interval", "10s"},
		{"--soak", "10s", "--soak-min-availability", "120"},
	} {
		code, stderr := runBad(t, append([]string{"run", writeFile(t, "name: x\ncni:\n  name: flannel\n  versions: [v0.28.10]\n")}, flags...)...)
		if code != exitBadInput || !strings.Contains(stderr, "--soak") {
			t.Errorf("%v: exit %d, stderr %q", flags, code, stderr)
		}
	}
	// Provider existing: the kubeconfig is required, and its flags go with it.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{writeFile(t, "name: x\ncni:\n  name: flannel\n  versions: [v0.28.10]\nprovider: existing\n")}, "provider existing needs a kubeconfig"},
		{[]string{writeFile(t, "name: x\ncni:\n  name: flannel\n  versions: [v0.28.10]\n"), "--context", "prod"}, "--context, --mode and --replace-cni go with --kubeconfig"},
		{[]string{writeFile(t, "name: x\ncni:\n  name: flannel\n  versions: [v0.28.10]\n"), "--kubeconfig", "/k", "--mode", "upgrade"}, `--mode "upgrade": want installed or install`},
		{[]string{"../../scenarios/offline-flannel-upgrade.yaml", "--kubeconfig", "/k"}, "an upgrade scenario changes the CNI; on an existing cluster use --mode install"},
	} {
		code, stderr := runBad(t, append([]string{"run"}, c.args...)...)
		if code != exitBadInput || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", c.args, code, stderr, c.want)
		}
	}
	code, stderr := runBad(t, "run", writeFile(t, "name: x\ncni:\n  name: flannel\n  versions: [v0.28.10]\n"), "--reuse-clusters", "--keep")
	if code != exitBadInput || !strings.Contains(stderr, "--reuse-clusters and --keep do not go together") {
		t.Errorf("--reuse-clusters --keep: exit %d, stderr %q", code, stderr)
	}
	if after := networks(t); after != before {
		t.Errorf("bad input created Docker networks:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestRunWithoutDockerEngineExitsTwo(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
	code, stderr := runBad(t, "run", writeFile(t, "name: x\ncni:\n  name: flannel\n  versions: [v0.28.10]\nprovider: auto\n"))
	if code != exitBadInput {
		t.Fatalf("exit %d, want %d; stderr %s", code, exitBadInput, stderr)
	}
	if !strings.Contains(stderr, "no Docker engine reachable") {
		t.Errorf("stderr %q does not name the missing Docker engine", stderr)
	}
}

func TestHelpExplainsEveryVerb(t *testing.T) {
	for _, verb := range []string{"run", "report", "images", "version", "gc", "diff", "audit"} {
		code, _ := runBad(t, verb, "--help")
		if code != 0 {
			t.Errorf("%s --help: exit %d", verb, code)
		}
	}
	root := newRoot()
	for _, c := range root.Commands() {
		if c.Short == "" {
			t.Errorf("verb %s has no short help", c.Name())
		}
	}
}

// --dry-run validates and prints each cell's plan without a Docker engine
// (the unreachable DOCKER_HOST: a real run exits 2 on it) and so without
// creating anything; a skipped cell says why.
func TestRunDryRunPrintsPlansWithoutDocker(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
	code, out, stderr, err := runCLI(t, "run", "../../scenarios/offline-flannel-arm64.yaml", "--dry-run")
	if code != 0 {
		t.Fatalf("exit %d: %v\n%s%s", code, err, out, stderr)
	}
	for _, want := range []string{
		"flannel-v0.28.10_k8s-v1.37.2_arm64_qemu",
		"control plane amd64 (kind node), 1 worker(s) arm64 (QEMU VM); Kubernetes v1.37.2",
		"kube-flannel.yaml (local file)",
		"image:    docker.io/cnimatrix/flannel:v0.28.10: from the run's registry: built here, imported",
		"CNIWorkloadArch",
		"expect:   pass",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}
	// On an existing cluster the plan says whose, and that the CNI is its own.
	code, out, _, err = runCLI(t, "run", "../../scenarios/offline-flannel.yaml", "--dry-run", "--kubeconfig", "/etc/prod.kubeconfig", "--context", "prod")
	for _, want := range []string{
		"flannel-v0.28.10_k8s-v1.37.2_amd64_existing",
		"existing cluster of /etc/prod.kubeconfig (context prod), installed mode",
		"the cluster's own (detected, not applied)",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("existing plan (exit %d, %v) lacks %q:\n%s", code, err, want, out)
		}
	}
	if strings.Contains(out, "HostToNodePort") {
		t.Errorf("existing plan runs HostToNodePort:\n%s", out)
	}
	code, out, _, err = runCLI(t, "run", "../../scenarios/seed-2019-calico.yaml", "--dry-run")
	if code != 0 || !strings.Contains(out, "skipped, no cluster: calico v3.1.7 cannot run on Kubernetes v1.37.2") {
		t.Errorf("skipped cells (exit %d, %v):\n%s", code, err, out)
	}
}

// The whole Calico matrix plans without Docker and without its manifests:
// with an empty manifest cache and no pins lock, every version that needs
// a download is printed as not runnable yet, saying how to fix it, and the
// dry run exits 0; a real run of the same file is refused (exit 2).
func TestRunDryRunOfCalicoMatrixWithoutManifests(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
	t.Setenv("CNIMATRIX_CACHE", t.TempDir())
	t.Setenv("CNIMATRIX_PINS", filepath.Join(t.TempDir(), "pins.lock"))
	code, out, stderr, err := runCLI(t, "run", "../../scenarios/calico-arm64.yaml", "--dry-run")
	if code != 0 {
		t.Fatalf("exit %d: %v\n%s%s", code, err, out, stderr)
	}
	for _, want := range []string{
		"scenario calico-arm64: 72 cells (dry run: nothing is created)",
		"calico-v3.32.1_k8s-v1.37.2_arm64_qemu\n  cluster:  control plane amd64 (kind node), 1 worker(s) arm64 (QEMU VM)",
		"cannot run yet: calico v3.32.1: manifest not in the manifest cache",
		"cannot run yet: calico v3.15.5: manifest not pinned",
		"calico-v3.18.6_k8s-v1.37.2_arm64_qemu\n  skipped, no cluster: calico v3.18.6 cannot run on Kubernetes v1.37.2",
		"a run of this scenario is refused until then",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q", want)
		}
	}
	if code, stderr := runBad(t, "run", "../../scenarios/calico-arm64.yaml"); code != exitBadInput || !strings.Contains(stderr, "calico-arm64.yaml:23: calico v3.15.5: manifest not pinned") {
		t.Errorf("a real run: exit %d, %s", code, stderr)
	}
}

// An unknown verb and an --out that is a file are bad input (exit 2), the
// first with the list of verbs.
func TestUnknownVerbAndOutFileExitTwo(t *testing.T) {
	if code, stderr := runBad(t, "nosuch"); code != exitBadInput || !strings.Contains(stderr, `unknown command "nosuch" (commands: `) || !strings.Contains(stderr, "run") {
		t.Errorf("unknown verb: exit %d, %s", code, stderr)
	}
	file := filepath.Join(t.TempDir(), "out")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, stderr := runBad(t, "run", "../../scenarios/offline-flannel.yaml", "--out", file); code != exitBadInput || !strings.Contains(stderr, "--out "+file+" is a file") {
		t.Errorf("--out a file: exit %d, %s", code, stderr)
	}
}

// --shard: a bad value is bad input; the shards of a scenario's dry run
// are disjoint and together hold every cell; a shard with no cells writes
// an empty matrix and exits 0 without Docker.
func TestRunShard(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
	scen := "../../scenarios/offline-flannel-k8s-versions.yaml"
	for _, bad := range []string{"0/2", "3/2", "x"} {
		if code, stderr := runBad(t, "run", scen, "--shard", bad); code != exitBadInput || !strings.Contains(stderr, "K/N") {
			t.Errorf("--shard %s: exit %d, stderr %q", bad, code, stderr)
		}
	}
	cellRe := regexp.MustCompile(`(?m)^(\S+_k8s-\S+)$`)
	all := map[string]int{}
	code, out, _, err := runCLI(t, "run", scen, "--dry-run")
	if code != 0 {
		t.Fatalf("dry run: exit %d %v\n%s", code, err, out)
	}
	whole := cellRe.FindAllStringSubmatch(out, -1)
	for k := 1; k <= 2; k++ {
		code, out, _, err := runCLI(t, "run", scen, "--dry-run", "--shard", fmt.Sprintf("%d/2", k))
		if code != 0 || !strings.Contains(out, fmt.Sprintf("shard %d/2:", k)) {
			t.Fatalf("shard %d/2: exit %d %v\n%s", k, code, err, out)
		}
		for _, m := range cellRe.FindAllStringSubmatch(out, -1) {
			all[m[1]]++
		}
	}
	if len(whole) == 0 || len(all) != len(whole) {
		t.Errorf("shards hold %v, the scenario %d cells", all, len(whole))
	}
	for id, n := range all {
		if n != 1 {
			t.Errorf("cell %s in %d shards", id, n)
		}
	}
	dir := t.TempDir()
	code, _, stderr, err := runCLI(t, "run", scen, "--shard", "40/40", "--out", dir)
	if code != 0 || !strings.Contains(stderr, "nothing to run") {
		t.Fatalf("empty shard: exit %d %v\n%s", code, err, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "matrix.json")); err != nil {
		t.Errorf("empty shard wrote no matrix: %v", err)
	}
}
