package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/cnimatrix/cnimatrix/internal/artifacts"
	"github.com/cnimatrix/cnimatrix/internal/cluster"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

// collect saves the cell's artifacts before its cluster is deleted.
func (e *Engine) collect(ctx context.Context, run *cellRun, cl *cluster.Cluster, client kubernetes.Interface) {
	if e.opts.ArtifactsDir == "" || run.collected {
		return
	}
	run.collected = true
	dir := filepath.Join(e.opts.ArtifactsDir, run.result.Cell.ID())
	_ = run.phase("artifacts", true, func() ([]matrix.Evidence, error) {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		err := artifacts.Collect(actx, dir, client, cl.Nodes)
		run.result.Artifacts = dir
		if aerr := writeAudit(dir, run.audit); aerr != nil {
			err = errors.Join(err, aerr)
		}
		for name, src := range cl.Logs {
			if cerr := copyFile(src, filepath.Join(dir, "provider", name)); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}
		if err != nil {
			// Partial artifacts are still useful; record what failed without
			// turning the cell into an infrastructure error.
			run.log.Infof("some artifacts could not be collected: %v", err)
		}
		return []matrix.Evidence{{Check: "artifacts", Target: dir, OK: true}}, nil
	})
}

// saveAudit saves the audit of a cell that ended before it had a cluster
// (a strict preflight) as its artifacts.
func (e *Engine) saveAudit(run *cellRun) {
	if e.opts.ArtifactsDir == "" || run.audit == nil {
		return
	}
	dir := filepath.Join(e.opts.ArtifactsDir, run.result.Cell.ID())
	if err := writeAudit(dir, run.audit); err != nil {
		run.log.Infof("artifacts: %v", err)
		return
	}
	run.result.Artifacts = dir
}

// copyFile copies a provider log (e.g. a VM's serial console, which shows
// the kernel command line with the agent's token) into the artifacts,
// redacted.
func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return artifacts.WriteRedacted(dst, b)
}
