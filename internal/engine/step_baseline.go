package engine

import (
	"context"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/uninstall"
)

// stepBaseline reads what a new cluster's nodes have before any CNI, when
// its cells share it: what the uninstall between cells must return them
// to. Without a baseline an uninstall could not tell what the CNI left, so
// a failure here lets the cell run on, and its cluster is deleted after it.
var stepBaseline = Step{Name: "baseline", Infra: true, KeepGoing: true,
	Applies: func(c *cellRun) bool { return c.plan.Reuse && c.pool == nil }, Run: takeBaseline}

func takeBaseline(ctx context.Context, c *cellRun) StepResult {
	bctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	b, err := uninstall.TakeBaseline(bctx, c.client, c.cl.Nodes)
	if err != nil {
		return StepResult{Err: err}
	}
	c.pool = &pooled{cl: c.cl, prov: c.prov, workDir: c.workDir, first: c.plan.Cell.ID(), baseline: b}
	return StepResult{Evidence: baselineEvidence(b)}
}
