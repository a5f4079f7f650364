package engine

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/checks"
	"github.com/cnimatrix/cnimatrix/internal/logx"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/report"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

type passCheck struct{}

func (passCheck) Name() string { return "Passes" }
func (passCheck) Run(context.Context, *checks.Env) checks.Result {
	return checks.Result{OK: true, Evidence: []checks.Evidence{{Check: "Passes", OK: true}}}
}

// oneNodeCheck cannot run on a one-node cluster, as PodToPodAcrossNodes.
type oneNodeCheck struct{}

func (oneNodeCheck) Name() string { return "NeedsTwoNodes" }
func (oneNodeCheck) Run(context.Context, *checks.Env) checks.Result {
	return checks.Result{Skip: "needs 2 nodes", Err: "skipped: needs 2 nodes"}
}

// afterTwoNodes depends on the check that could not run.
type afterTwoNodes struct{}

func (afterTwoNodes) Name() string        { return "AfterTwoNodes" }
func (afterTwoNodes) DependsOn() []string { return []string{"NeedsTwoNodes"} }
func (afterTwoNodes) Run(context.Context, *checks.Env) checks.Result {
	return checks.Result{OK: true}
}

// A check that could not run is "skipped" in matrix.json, as is what
// depends on it; the cell is unknown, not pass and not fail.
func TestSkippedCheckIsSkippedInMatrixJSON(t *testing.T) {
	cell := matrix.Cell{CNI: "flannel", CNIVersion: "v0.28.10", Kubernetes: "v1.37.2", Arch: "amd64", Provider: "kind"}
	c := &cellRun{log: logx.Discard(), env: &checks.Env{Log: logx.Discard()}, timeouts: scenario.Timeouts{Checks: time.Minute},
		result: &matrix.Result{Cell: cell, ID: cell.ID()}}
	c.run(context.Background(), Step{Name: StepChecks, Run: func(ctx context.Context, c *cellRun) StepResult {
		c.checksRan = true
		return c.runChecks(ctx, "", []checks.Check{passCheck{}, oneNodeCheck{}, afterTwoNodes{}})
	}})
	res := *c.result
	res.Outcome, res.Reason = verdict(res, c.checksRan)
	m := matrix.New("skip", []matrix.Cell{cell})
	m.Record(res)
	files, err := report.WriteAll(t.TempDir(), m)
	if err != nil {
		t.Fatal(err)
	}
	back, err := matrix.ReadJSON(files.JSON)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := back.Get(cell.ID())
	if !ok {
		t.Fatal("cell not in matrix.json")
	}
	got := map[string]matrix.Phase{}
	for _, p := range r.Phases {
		got[p.Name] = p
	}
	if p := got["check:Passes"]; p.Outcome != matrix.Pass || p.Step != StepChecks {
		t.Errorf("check:Passes %+v", p)
	}
	if p := got["check:NeedsTwoNodes"]; p.Outcome != matrix.Skipped || p.Error != "needs 2 nodes" {
		t.Errorf("check:NeedsTwoNodes %+v, want skipped with its reason", p)
	}
	if p := got["check:AfterTwoNodes"]; p.Outcome != matrix.Skipped || p.Error != "NeedsTwoNodes failed" {
		t.Errorf("check:AfterTwoNodes %+v, want skipped after its dependency", p)
	}
	if r.Outcome != matrix.Unknown || !strings.Contains(r.Reason, "check:NeedsTwoNodes skipped: needs 2 nodes") {
		t.Errorf("cell %s %q, want unknown naming the skipped check", r.Outcome, r.Reason)
	}
}

// harnessCheck could not exec into its probe pods (checks.Result.Infra).
type harnessCheck struct{}

func (harnessCheck) Name() string { return "PodToClusterIP" }
func (harnessCheck) Run(context.Context, *checks.Env) checks.Result {
	return checks.Result{Infra: true, Err: "the harness could not reach its probe pods (1/1): harness: exec in pod x/probe: context deadline exceeded",
		Evidence: []checks.Evidence{{Check: "PodToClusterIP", Harness: true}}}
}

// A check that could not judge because the harness's exec failed makes the
// cell infra-error, never fail connectivity.
func TestHarnessFaultInACheckIsInfraError(t *testing.T) {
	cell := matrix.Cell{CNI: "flannel", CNIVersion: "v0.28.10", Kubernetes: "v1.37.2", Arch: "arm64", Provider: "qemu"}
	c := &cellRun{log: logx.Discard(), env: &checks.Env{Log: logx.Discard()}, timeouts: scenario.Timeouts{Checks: time.Minute},
		result: &matrix.Result{Cell: cell, ID: cell.ID()}}
	c.run(context.Background(), Step{Name: StepChecks, Run: func(ctx context.Context, c *cellRun) StepResult {
		c.checksRan = true
		return c.runChecks(ctx, "", []checks.Check{passCheck{}, harnessCheck{}})
	}})
	out, reason := verdict(*c.result, c.checksRan)
	if out != matrix.InfraError || !strings.Contains(reason, "check:PodToClusterIP: the harness could not reach its probe pods") {
		t.Errorf("verdict %s %q, want infra-error naming the check", out, reason)
	}
}
