package engine

import (
	"context"
	"slices"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/checks"
	"github.com/cnimatrix/cnimatrix/internal/cluster"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

// StepChecks is the step that records the check:… phases.
const StepChecks = "checks"

// stepChecks runs the plan's checks, one phase each; a check that could
// not run is a skipped phase (and leaves the cell unknown), never a
// failure.
var stepChecks = Step{Name: StepChecks, Run: func(ctx context.Context, c *cellRun) StepResult {
	c.env = c.checksEnv()
	c.checksRan = true
	return c.runChecks(ctx, "", withAgentCheck(c.plan.Checks, c.cl.Nodes))
}}

// withAgentCheck adds NodeAgentSealed when some node runs the harness's own
// agent: a cell whose pods could take over such a node is no verdict.
func withAgentCheck(list []checks.Check, nodes []cluster.Node) []checks.Check {
	for _, n := range nodes {
		if n.Agent != "" {
			return append(slices.Clip(list), checks.NodeAgentSealed{})
		}
	}
	return list
}

func (c *cellRun) checksEnv() *checks.Env {
	p := c.plan
	return &checks.Env{
		Client: c.client, Config: c.cfg, Nodes: c.cl.Nodes, Namespace: checks.DefaultNamespace,
		NginxImage: NginxImage, ProbeImage: ProbeImage,
		CNINamespace: p.cni().Namespace, CNISelector: p.cni().Selector,
		Timeout: c.timeouts.Checks, Log: c.log, TargetPort: p.scenario.Checks.ServiceTargetPort,
		// The cluster is deleted after the cell (or kept for debugging with
		// its workloads): waiting for the namespace to go costs ~15 s for
		// nothing. An existing cluster is not cnimatrix's: the namespace
		// goes unless --keep.
		KeepNamespace: !p.onExisting() || c.e.opts.Keep,
		Arch:          p.Cell.Arch, CNIWorkloads: cniWorkloads(c.applied, p.cni()),
		ExecSlack: c.execSlack(), Owner: c.e.runID,
	}
}

// execSlack is what one exec into a pod may take beyond its command's own
// limit: scaled like the cell's waits on emulated nodes, where the API
// server, kubelet and runtime round trip is that much slower.
func (c *cellRun) execSlack() time.Duration {
	if !c.cl.Emulated {
		return checks.DefaultExecSlack
	}
	// At most 2 minutes: an exec that takes longer is stuck, not slow, and
	// each probe retries it.
	return min(time.Duration(float64(checks.DefaultExecSlack)*waitScale(c.cl.Slowdown)), 2*time.Minute)
}

// runChecks runs list as phases "check:<name>" (prefix before them).
func (c *cellRun) runChecks(ctx context.Context, prefix string, list []checks.Check) StepResult {
	cctx, cancel := context.WithTimeout(ctx, 2*c.timeouts.Checks)
	defer cancel()
	var r StepResult
	for _, cr := range checks.Run(cctx, c.env, list) {
		start := cr.Start
		if start.IsZero() {
			start = time.Now() // skipped: it did not run, it ended here
		}
		p := matrix.Phase{Name: prefix + "check:" + cr.Name, Step: StepChecks, Outcome: matrix.Pass,
			Start: start, DurationMS: float64(cr.Duration) / float64(time.Millisecond),
			Evidence: matrixEvidence(cr.Evidence), Cause: cr.Cause}
		switch {
		case cr.Skip != "":
			p.Outcome, p.Error = matrix.Skipped, cr.Skip
		case !cr.OK && cr.Infra:
			p.Outcome, p.Error, p.Infra, r.Failed = matrix.InfraError, cr.Err, true, true
		case !cr.OK:
			p.Outcome, p.Error, r.Failed = matrix.Fail, cr.Err, true
		}
		r.Phases = append(r.Phases, p)
	}
	return r
}

func matrixEvidence(in []checks.Evidence) []matrix.Evidence {
	var out []matrix.Evidence
	for _, ev := range in {
		out = append(out, matrix.Evidence{Check: ev.Check, Source: ev.Source, Target: ev.Target, OK: ev.OK, Detail: ev.Detail, LatencyMS: float64(ev.Latency) / float64(time.Millisecond), Attempts: ev.Attempts})
	}
	return out
}
