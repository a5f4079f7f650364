package ciconfig

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

// repoRoot is the repository this package sits in (tests run in the
// package's directory).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root: %v", err)
	}
	return root
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// cnimatrixBinary builds cmd/cnimatrix once per test run: the verbs and flags
// the workflows use are checked against the real command tree.
func cnimatrixBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ciconfig-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "cnimatrix")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", binPath, "./cmd/cnimatrix")
		cmd.Dir = repoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/cnimatrix: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

func newChecker(t *testing.T) *Checker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := New(ctx, repoRoot(t), cnimatrixBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRepositoryWorkflows is the check itself: every workflow of this
// repository against its Makefile and its cnimatrix binary.
func TestRepositoryWorkflows(t *testing.T) {
	c := newChecker(t)
	dir := filepath.Join(c.Root, ".github", "workflows")
	probs, err := c.Dir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(probs) > 0 {
		t.Errorf("%d problem(s) in %s:\n%v", len(probs), dir, matrix.LineErrors(probs))
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.yml"))
	t.Logf("checked %d workflows; Makefile targets %v; cnimatrix verbs %v", len(files), sortedKeys(c.Make.Targets), c.CLI.SubNames())
}

// TestMatrixWorkflowShards holds matrix.yml to its purpose: arm64 cells on
// native arm64 runners with kind and on amd64 runners in QEMU VMs, merged
// and gated by one job.
func TestMatrixWorkflowShards(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), ".github", "workflows", "matrix.yml"))
	if err != nil {
		t.Fatal(err)
	}
	wf := string(data)
	for _, want := range []string{
		"runner: ubuntu-24.04-arm", "filter: arch=arm64 provider=kind",
		"runner: ubuntu-24.04\n", "filter: arch=arm64 provider=qemu",
		"make matrix SCENARIO=", "actions/upload-artifact@", "GITHUB_STEP_SUMMARY",
		"cnimatrix report --merge", "cnimatrix diff \"$BASELINE\"", "--expectations \"$EXPECTATIONS\"",
	} {
		if !strings.Contains(wf, want) {
			t.Errorf("matrix.yml lacks %q", want)
		}
	}
}

// badWorkflow has one mistake of each kind the check must find; wantBad
// lists them by line.
const badWorkflow = `name: bad
on: push
env:
  EXPECTATIONS: scenarios/no-such-expectations.yaml
jobs:
  build:
    runs-on: ubuntu-24.04
    strategy:
      matrix:
        include:
          - shard: a
            scenario: scenarios/no-such-scenario.yaml
    steps:
      - uses: actions/checkout@main
      - uses: actions/setup-go
      - uses: actions/cache@v4
        with:
          path: ${{ env.NO_SUCH_ENV }}
      - run: echo ${{ matrix.shardd }}
      - name: script
        run: |
          make nosuchtarget
          sudo -E env "PATH=$PATH" make matrix SCENAIRO=x OUT=_out
          bin/cnimatrix frobnicate --out x
          bin/cnimatrix run scenarios/offline-flannel.yaml \
            --fliter k8s=v1.37.2
          go run ./cmd/cnimatrix report --expectations x.yaml a.json
          bin/cnimatrix images
          bin/cnimatrix run $SCENARIO
          make $TARGET
          bin/cnimatrix run x.yaml ${{ matrix.shard }}
  gate:
    needs: [build, nosuchjob]
    runs-on: ubuntu-24.04
    steps:
      - run: echo "${{ needs.other.result }}"
  empty:
    runs-on: ubuntu-24.04
  nowhere:
    steps:
      - uses: docker://alpine:latest
      - run: make build
        working-directory: elsewhere
`

var wantBad = []struct {
	line int
	msg  string
}{
	{4, "expectations scenarios/no-such-expectations.yaml"},
	{12, "scenario scenarios/no-such-scenario.yaml"},
	{14, `pin "main" to a version tag`},
	{15, "uses actions/setup-go: want OWNER/REPO[/PATH]@VERSION"},
	{18, "env.NO_SUCH_ENV is not set"},
	{19, "matrix.shardd is not a key"},
	{22, "make nosuchtarget: no such target"},
	{23, "SCENAIRO is not a variable"},
	{24, `unknown verb "frobnicate"`},
	{25, "cnimatrix run: unknown flag --fliter"},
	{27, "cnimatrix report: unknown flag --expectations"},
	{28, "cnimatrix images: no verb"},
	{29, "unquoted expansion $SCENARIO"},
	{30, "make $TARGET: a target from an expansion"},
	{31, "unquoted expansion GHA_EXPRESSION"},
	{33, `needs "nosuchjob", which is not a job`},
	{36, "needs.other, but the job does not need other"},
	{37, "job empty: no steps"},
	{39, "job nowhere: no runs-on"},
	{41, "pin the image to a tag other than latest"},
	{42, "runs in elsewhere"},
}

// TestBadWorkflow proves the check can fail: each mistake is found, on its
// line, and nothing else is.
func TestBadWorkflow(t *testing.T) {
	c := newChecker(t)
	probs := c.Workflow("bad.yml", []byte(badWorkflow))
	found := make([]bool, len(probs))
	for _, w := range wantBad {
		ok := false
		for i, p := range probs {
			if p.Line == w.line && strings.Contains(p.Msg, w.msg) {
				ok, found[i] = true, true
			}
		}
		if !ok {
			t.Errorf("missing problem at line %d: %q", w.line, w.msg)
		}
	}
	for i, p := range probs {
		if !found[i] {
			t.Errorf("unexpected problem: %v", p)
		}
	}
	if t.Failed() {
		t.Logf("all problems:\n%v", matrix.LineErrors(probs))
	}
}

func TestNotAWorkflow(t *testing.T) {
	c := newChecker(t)
	for name, src := range map[string]string{
		"not YAML":  "jobs: [unclosed\n",
		"no jobs":   "on: push\n",
		"a list":    "- a\n- b\n",
		"job empty": "on: push\njobs:\n  x: {}\n",
	} {
		if probs := c.Workflow(name+".yml", []byte(src)); len(probs) == 0 {
			t.Errorf("%s: no problem found in %q", name, src)
		}
	}
	if _, err := c.Dir(t.TempDir()); err == nil {
		t.Error("a directory without workflows passed")
	}
}

func TestSplitCommands(t *testing.T) {
	script := `# make commented
sudo -E env "PATH=$PATH" make matrix OUT="$OUT" || status=$?
if [ -f x ]; then bin/cnimatrix report "$OUT/matrix.json" >>"$GITHUB_STEP_SUMMARY" 2>&1; fi
echo "make nosuch; bin/cnimatrix nosuch"
bin/cnimatrix diff a.json \
  b.json --markdown d.md
cat <<'EOF' >x
make nosuch
EOF
for f in make nosuch; do go run ./cmd/cnimatrix version; done
v=$(bin/cnimatrix version)
`
	want := []string{
		"make matrix OUT=$OUT",
		"[ -f x ]",
		"bin/cnimatrix report $OUT/matrix.json",
		"echo make nosuch; bin/cnimatrix nosuch",
		"bin/cnimatrix diff a.json b.json --markdown d.md",
		"cat",
		"go run ./cmd/cnimatrix version",
		"bin/cnimatrix version",
	}
	wantLines := []int{1, 2, 2, 3, 4, 6, 9, 10}
	var got []string
	var lines []int
	cmds, err := splitCommands(script)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cmds {
		ws := commandWords(c.words)
		if len(ws) == 0 {
			continue
		}
		var s []string
		for _, w := range ws {
			s = append(s, w.text)
		}
		got = append(got, strings.Join(s, " "))
		lines = append(lines, c.line)
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if fmt.Sprint(lines) != fmt.Sprint(wantLines) {
		t.Errorf("lines %v, want %v", lines, wantLines)
	}
}

func TestMakefile(t *testing.T) {
	mf, err := LoadMakefile(filepath.Join(repoRoot(t), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range []string{"help", "setup", "build", "test", "test-short", "e2e", "matrix", "lint"} {
		if !mf.Targets[tg] {
			t.Errorf("target %s not found (got %v)", tg, sortedKeys(mf.Targets))
		}
	}
	for _, v := range []string{"SCENARIO", "OUT", "GINKGO_FLAGS", "FILTER", "GOFLAGS", "LDFLAGS"} {
		if !mf.Variables[v] {
			t.Errorf("variable %s not found (got %v)", v, sortedKeys(mf.Variables))
		}
	}
	for _, no := range []string{".PHONY", "LDFLAGS", "SHELL"} {
		if mf.Targets[no] {
			t.Errorf("%s taken for a target", no)
		}
	}
}

func TestCLITree(t *testing.T) {
	c := newChecker(t)
	run := c.CLI.Subs["run"]
	if run == nil {
		t.Fatalf("no run verb: %v", c.CLI.SubNames())
	}
	for flag, takes := range map[string]bool{"--filter": true, "--out": true, "-o": true, "--keep": false, "-v": false, "--cache": true} {
		f, ok := run.Flags[flag]
		if !ok || f.TakesValue != takes {
			t.Errorf("run %s: got %+v (found %v), want takes value %v", flag, f, ok, takes)
		}
	}
	if f, ok := c.CLI.Subs["report"].Flags["--merge"]; !ok || f.TakesValue {
		t.Errorf("report --merge: %+v %v", f, ok)
	}
	if _, ok := c.CLI.Subs["diff"].Flags["--expectations"]; !ok {
		t.Error("diff --expectations not found")
	}
	if c.CLI.Subs["images"].Subs["build"] == nil {
		t.Error("images build not found")
	}
}
