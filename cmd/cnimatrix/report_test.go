package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

func TestReportMergeShards(t *testing.T) {
	dir := t.TempDir()
	// Each CI shard writes every cell of the scenario, unknown for the ones another shard ran.
	a := writeTestMatrix(t, dir, "amd64.json", cellOutcome{amd64Cell, matrix.Pass, ""}, cellOutcome{arm64Cell, matrix.Unknown, ""})
	b := writeTestMatrix(t, dir, "arm64.json", cellOutcome{amd64Cell, matrix.Unknown, ""}, cellOutcome{arm64Cell, matrix.Fail, "exec-format"})
	merged := filepath.Join(dir, "merged.json")
	code, out, stderr, err := runCLI(t, "report", "--merge", a, b, "-o", merged)
	if code != exitOK {
		t.Fatalf("exit %d (%v)", code, err)
	}
	if out != "" || !strings.Contains(stderr, "merged 2 shard(s) into "+merged+": 2 cells: 1 pass, 1 fail") {
		t.Errorf("stdout %q stderr %q", out, stderr)
	}
	m, err := matrix.ReadJSON(merged)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := m.Get(amd64Cell.ID()); r.Outcome != matrix.Pass {
		t.Errorf("%s: %s, want pass", amd64Cell.ID(), r.Outcome)
	}
	if r, _ := m.Get(arm64Cell.ID()); r.Outcome != matrix.Fail || r.RootCause != "exec-format" {
		t.Errorf("%s: %s (%s), want fail (exec-format)", arm64Cell.ID(), r.Outcome, r.RootCause)
	}

	// Without -o the merged matrix is printed as Markdown; --markdown and --junit render it to files.
	if code, out, _, err := runCLI(t, "report", "--merge", a, b); code != exitOK || !strings.Contains(out, "# cnimatrix: offline-flannel") {
		t.Errorf("merge to stdout: exit %d (%v)\n%s", code, err, out)
	}
	md, junit := filepath.Join(dir, "m.md"), filepath.Join(dir, "m.xml")
	if code, _, _, err := runCLI(t, "report", "--merge", a, b, "--markdown", md, "--junit", junit); code != exitOK {
		t.Errorf("merge to files: exit %d (%v)", code, err)
	}
	// The single-matrix form is unchanged.
	if code, out, _, err := runCLI(t, "report", merged); code != exitOK || !strings.Contains(out, "2 cells: 1 pass, 1 fail") {
		t.Errorf("report merged.json: exit %d (%v)\n%s", code, err, out)
	}
}

func TestReportMergeConflictNamesCell(t *testing.T) {
	dir := t.TempDir()
	a := writeTestMatrix(t, dir, "first.json", cellOutcome{amd64Cell, matrix.Pass, ""})
	b := writeTestMatrix(t, dir, "rerun.json", cellOutcome{amd64Cell, matrix.Fail, "connectivity"})
	code, _, _, err := runCLI(t, "report", "--merge", a, b, "-o", filepath.Join(dir, "merged.json"))
	if code != exitBadInput {
		t.Fatalf("exit %d (%v), want %d", code, err, exitBadInput)
	}
	want := "cell " + amd64Cell.ID() + ": " + a + " says pass, " + b + " says fail (connectivity)"
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q, want it to contain %q", err, want)
	}
}

func TestReportArgs(t *testing.T) {
	dir := t.TempDir()
	a := writeTestMatrix(t, dir, "a.json", cellOutcome{amd64Cell, matrix.Pass, ""})
	for _, args := range [][]string{
		{"report"},
		{"report", a, a},
		{"report", a, "-o", filepath.Join(dir, "x.json")},
		{"report", "--merge"},
		{"report", "--merge", a, filepath.Join(dir, "missing.json")},
	} {
		if code, _, _, err := runCLI(t, args...); code != exitBadInput {
			t.Errorf("%q: exit %d (%v), want %d", args, code, err, exitBadInput)
		}
	}
}

func TestReportWritesHTML(t *testing.T) {
	dir := t.TempDir()
	a := writeTestMatrix(t, dir, "a.json", cellOutcome{amd64Cell, matrix.Pass, ""}, cellOutcome{arm64Cell, matrix.Fail, "exec-format"})
	page := filepath.Join(dir, "m.html")
	code, out, _, err := runCLI(t, "report", a, "--html", page)
	if code != exitOK || out != "" {
		t.Fatalf("exit %d (%v), stdout %q: --html alone writes the page instead of printing Markdown", code, err, out)
	}
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`data-cell="` + amd64Cell.ID() + `" data-outcome="pass"`,
		`data-cell="` + arm64Cell.ID() + `" data-outcome="fail"`,
		`data-root-cause="exec-format"`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", page, want)
		}
	}
	// Merged shards render to HTML as well.
	b2 := writeTestMatrix(t, dir, "b.json", cellOutcome{amd64Cell, matrix.Unknown, ""}, cellOutcome{arm64Cell, matrix.Fail, "exec-format"})
	merged := filepath.Join(dir, "merged.html")
	if code, _, _, err := runCLI(t, "report", "--merge", a, b2, "--html", merged); code != exitOK {
		t.Fatalf("merge --html: exit %d (%v)", code, err)
	}
	if b, err := os.ReadFile(merged); err != nil || !strings.Contains(string(b), `data-cell="`+arm64Cell.ID()+`" data-outcome="fail"`) {
		t.Errorf("merged page: %v\n%.300s", err, b)
	}
}
