package engine

import (
	"context"
	"path/filepath"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/cnimatrix/cnimatrix/internal/artifacts"
	"github.com/cnimatrix/cnimatrix/internal/cluster"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

// collect saves the cell's artifacts before its cluster is deleted.
func (e *Engine) collect(ctx context.Context, run *cellRun, cl *cluster.Cluster, client kubernetes.Interface) {
	if e.opts.ArtifactsDir == "" {
		return
	}
	dir := filepath.Join(e.opts.ArtifactsDir, run.result.Cell.ID())
	_ = run.phase("artifacts", true, func() ([]matrix.Evidence, error) {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		err := artifacts.Collect(actx, dir, client, cl.Nodes)
		run.result.Artifacts = dir
		if err != nil {
			// Partial artifacts are still useful; record what failed without
			// turning the cell into an infrastructure error.
			run.log.Infof("some artifacts could not be collected: %v", err)
		}
		return []matrix.Evidence{{Check: "artifacts", Target: dir, OK: true}}, nil
	})
}
