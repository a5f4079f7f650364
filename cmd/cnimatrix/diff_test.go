package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

var (
	amd64Cell = matrix.Cell{CNI: "flannel", CNIVersion: "v0.28.10", Kubernetes: "v1.37.2", Arch: "amd64", Provider: "kind"}
	arm64Cell = matrix.Cell{CNI: "flannel", CNIVersion: "v0.28.10", Kubernetes: "v1.37.2", Arch: "arm64", Provider: "qemu"}
)

type cellOutcome struct {
	cell    matrix.Cell
	outcome matrix.Outcome
	cause   string
}

// writeTestMatrix writes a matrix.json the way "cnimatrix run" does and returns its path.
func writeTestMatrix(t *testing.T, dir, name string, outs ...cellOutcome) string {
	t.Helper()
	var cells []matrix.Cell
	for _, o := range outs {
		cells = append(cells, o.cell)
	}
	m := matrix.New("offline-flannel", cells)
	for _, o := range outs {
		m.Record(matrix.Result{Cell: o.cell, Outcome: o.outcome, RootCause: o.cause, Reason: "recorded " + string(o.outcome),
			Start: time.Now().UTC(), Phases: []matrix.Phase{{Name: "install-cni", Outcome: o.outcome}}})
	}
	p := filepath.Join(dir, name)
	if err := m.WriteJSON(p); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeTestFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// runCLI executes the CLI as main does and returns its exit status and output.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string, err error) {
	t.Helper()
	root := newRoot()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	err = root.ExecuteContext(context.Background())
	return exitCode(err), out.String(), errb.String(), err
}

func TestDiffRegressionExits1(t *testing.T) {
	dir := t.TempDir()
	base := writeTestMatrix(t, dir, "base.json", cellOutcome{amd64Cell, matrix.Pass, ""}, cellOutcome{arm64Cell, matrix.Pass, ""})
	cur := writeTestMatrix(t, dir, "new.json", cellOutcome{amd64Cell, matrix.Pass, ""}, cellOutcome{arm64Cell, matrix.Fail, "exec-format"})
	md := filepath.Join(dir, "diff.md")
	code, out, _, err := runCLI(t, "diff", base, cur, "--markdown", md)
	if code != exitFailed {
		t.Fatalf("exit %d (%v), want %d\n%s", code, err, exitFailed, out)
	}
	if !strings.Contains(err.Error(), "1 regression(s) against "+base) {
		t.Errorf("error %q", err)
	}
	for _, want := range []string{"1 regression, 0 fixed", "REGRESSIONS", arm64Cell.ID() + ": pass -> fail (exec-format): recorded fail"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	b, rerr := os.ReadFile(md)
	if rerr != nil || !strings.Contains(string(b), "❌ 1 regression") || !strings.Contains(string(b), "| `"+arm64Cell.ID()+"` | pass | fail (exec-format) |") {
		t.Errorf("markdown (%v):\n%s", rerr, b)
	}
	t.Logf("stdout:\n%s", out)

	// No regression: the same files the other way round are a fix.
	if code, out, _, err := runCLI(t, "diff", cur, base); code != exitOK || !strings.Contains(out, "FIXED") {
		t.Fatalf("reverse diff: exit %d (%v)\n%s", code, err, out)
	}
}

func TestDiffExpectedFailurePassesGate(t *testing.T) {
	dir := t.TempDir()
	base := writeTestMatrix(t, dir, "base.json", cellOutcome{amd64Cell, matrix.Pass, ""}, cellOutcome{arm64Cell, matrix.Pass, ""})
	cur := writeTestMatrix(t, dir, "new.json", cellOutcome{amd64Cell, matrix.Pass, ""}, cellOutcome{arm64Cell, matrix.Fail, "arch-mismatch"})
	exp := writeTestFile(t, dir, "expectations.yaml", `expectations:
  - cni: flannel
    arch: arm64
    rootCause: arch-mismatch
    reason: the arm64 image of this release is missing
`)
	code, out, stderr, err := runCLI(t, "diff", base, cur, "--expectations", exp)
	if code != exitOK {
		t.Fatalf("exit %d (%v), want 0\n%s", code, err, out)
	}
	for _, want := range []string{"0 regressions", "1 expected-fail", "EXPECTED FAILURES", arm64Cell.ID() + ": fail (arch-mismatch): the arm64 image of this release is missing (" + exp + ":2)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if want := "warning: " + exp + ":2: no link"; !strings.Contains(stderr, want) {
		t.Errorf("stderr lacks %q: %q", want, stderr)
	}

	// The same expectation does not excuse a failure with another root cause.
	other := writeTestMatrix(t, dir, "other.json", cellOutcome{amd64Cell, matrix.Pass, ""}, cellOutcome{arm64Cell, matrix.Fail, "connectivity"})
	if code, out, _, _ := runCLI(t, "diff", base, other, "--expectations", exp); code != exitFailed || !strings.Contains(out, "expects fail (rootCause arch-mismatch), not fail (connectivity)") {
		t.Fatalf("other root cause: exit %d\n%s", code, out)
	}
}

func TestDiffReportsExpectationThatCanBeRemoved(t *testing.T) {
	dir := t.TempDir()
	base := writeTestMatrix(t, dir, "base.json", cellOutcome{arm64Cell, matrix.Fail, "arch-mismatch"})
	cur := writeTestMatrix(t, dir, "new.json", cellOutcome{arm64Cell, matrix.Pass, ""})
	exp := writeTestFile(t, dir, "expectations.yaml", `expectations:
  - cell: `+arm64Cell.ID()+`
    reason: the arm64 image of this release is missing
    link: https://github.com/projectcalico/calico/issues/5963
`)
	md := filepath.Join(dir, "diff.md")
	code, out, stderr, err := runCLI(t, "diff", base, cur, "--expectations", exp, "--markdown", md)
	if code != exitOK {
		t.Fatalf("exit %d (%v), want 0\n%s", code, err, out)
	}
	want := exp + ":2 (cell=" + arm64Cell.ID() + "): every cell it selects now passes (" + arm64Cell.ID() + "): the expectation can be removed"
	if !strings.Contains(out, "EXPECTATIONS TO REVIEW") || !strings.Contains(out, want) || !strings.Contains(out, "1 fixed") {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
	if stderr != "" {
		t.Errorf("stderr %q, want none (the entry has a link)", stderr)
	}
	if b, _ := os.ReadFile(md); !strings.Contains(string(b), "### Expectations to review") {
		t.Errorf("markdown:\n%s", b)
	}
}

func TestDiffBadInputExits2(t *testing.T) {
	dir := t.TempDir()
	m := writeTestMatrix(t, dir, "m.json", cellOutcome{amd64Cell, matrix.Pass, ""})
	bad := writeTestFile(t, dir, "bad.yaml", "expectations:\n  - cni: flannel\n    arch: arm64\n    link: https://example.com/issue/1\n  - cell: x\n    reason: ok\n    outcome: green\n")
	code, _, _, err := runCLI(t, "diff", m, m, "--expectations", bad)
	if code != exitBadInput {
		t.Fatalf("exit %d (%v), want %d", code, err, exitBadInput)
	}
	for _, want := range []string{bad + ":2: reason is required", bad + `:7: outcome "green"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	for _, args := range [][]string{
		{"diff", m},
		{"diff", m, filepath.Join(dir, "missing.json")},
		{"diff", m, writeTestFile(t, dir, "garbage.json", "{")},
		{"diff", m, m, "--expectations", filepath.Join(dir, "missing.yaml")},
		{"diff", m, m, "--no-such-flag"},
	} {
		if code, _, _, err := runCLI(t, args...); code != exitBadInput {
			t.Errorf("%q: exit %d (%v), want %d", args, code, err, exitBadInput)
		}
	}
}
