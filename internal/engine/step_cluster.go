package engine

import (
	"context"
	"os"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

// stepCluster gives the cell its cluster: with reuse, one a cell before
// left clean, else a new one of the plan's layout. From here on the cell's
// end (finish.go) tears it down, releases or keeps it.
var stepCluster = Step{Name: "cluster", Infra: true, Run: func(ctx context.Context, c *cellRun) StepResult {
	e, p := c.e, c.plan
	c.prov = p.provider
	c.workDir = e.cellWorkDir(p.Cell)
	if p.onExisting() {
		if err := os.MkdirAll(c.workDir, 0o755); err != nil {
			return StepResult{Err: err}
		}
		return c.connectExisting(ctx)
	}
	if p.Reuse {
		c.wanted = e.startReuse(p.PoolKey)
		if c.pool = e.takePooled(p.PoolKey); c.pool != nil {
			c.cl, c.workDir = c.pool.cl, c.pool.workDir
			c.result.ClusterName = c.cl.Name
			return StepResult{Evidence: reusedEvidence(c.pool)}
		}
	}
	spec := cluster.Spec{
		Name: e.ClusterName(p.Cell), KubernetesVersion: p.Cell.Kubernetes, NodeImage: c.nodeImage,
		PodSubnet: p.scenario.PodSubnet, ServiceSubnet: p.scenario.ServiceSub, Network: e.network, WorkDir: c.workDir,
		Mirror:  &cluster.Mirror{Endpoint: "http://" + e.registry.Addr(), Upstreams: Upstreams},
		Preload: c.preload,
		Nodes:   p.Layout,
	}
	c.facts = &earlyFacts{}
	spec.OnBoot = c.facts.onBoot(ctx)
	if err := os.MkdirAll(c.workDir, 0o755); err != nil {
		return StepResult{Err: err}
	}
	cctx, cancel := context.WithTimeout(ctx, p.Timeouts.Cluster)
	defer cancel()
	cl, err := c.prov.Create(cctx, spec)
	if err != nil {
		return StepResult{Err: err}
	}
	c.cl = cl
	c.result.ClusterName = cl.Name
	return StepResult{Evidence: clusterEvidence(cl)}
}}

// fidelity is the tier a cell's nodes give its verdict.
func fidelity(cl *cluster.Cluster) string {
	if cl.Emulated {
		return matrix.FidelityVMEmulated
	}
	return matrix.FidelityNative
}
