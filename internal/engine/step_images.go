package engine

import (
	"context"

	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

// stepImages makes sure everything the cell's nodes pull or boot from
// exists: cached builds, cheap when Prepare ran.
var stepImages = Step{Name: "images", Infra: true, Run: func(ctx context.Context, c *cellRun) StepResult {
	e, p := c.e, c.plan
	var nodes preparedNodes
	var err error
	if !p.onExisting() { // an existing cluster's nodes are what they are
		if nodes, err = e.prepareNodes(ctx, p); err != nil {
			return StepResult{Err: err}
		}
	}
	// The nodes that boot from a disk have the harness's images in it.
	c.nodeImage, c.preload = nodes.NodeImage, nodes.Preload
	c.result.NodeImage = e.nodeImageSource(nodes.NodeImage)
	if err := e.PushImages(ctx, p.scenario); err != nil {
		return StepResult{Err: err}
	}
	if err := e.pushFixtures(ctx, p.scenario); err != nil {
		return StepResult{Err: err}
	}
	if nodes.Detail == "" {
		return StepResult{}
	}
	return StepResult{Evidence: []matrix.Evidence{{Check: "images", Target: p.provider.Name(), OK: true, Detail: nodes.Detail}}}
}}
