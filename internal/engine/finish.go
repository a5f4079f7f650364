package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/archaudit"
	"github.com/cnimatrix/cnimatrix/internal/artifacts"
	"github.com/cnimatrix/cnimatrix/internal/checks"
	"github.com/cnimatrix/cnimatrix/internal/cluster"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

// finish ends a cell whatever step its journey stopped at, once: a cell
// that did not pass gets its artifacts saved (the nodes' state before the
// cluster goes, or the audit of a cell that never had one); then its
// cluster is torn down, kept (--keep) or, when reused, released to the
// next cell.
func (c *cellRun) finish(ctx context.Context) {
	if outcome, _ := verdict(*c.result, c.checksRan); outcome != matrix.Pass && outcome != matrix.Skipped {
		c.collect(ctx)
	}
	if c.plan.onExisting() && !c.plan.installed() && c.cl != nil && !c.e.opts.Keep {
		// Install mode: what the run applied goes. (In installed mode the
		// CNI is the cluster's own and stays, whatever happened.)
		c.uninstallExisting(ctx)
	}
	if c.cl == nil {
		// No cluster (its creation failed or was interrupted, and the
		// provider removed what it had made): its work folder holds
		// nothing to keep, a VM's overlay disk perhaps, and goes too.
		if c.pool == nil && c.workDir != "" {
			_ = os.RemoveAll(c.workDir)
		}
		return
	}
	if c.pool == nil {
		c.teardown(ctx, c.prov, c.cl, c.workDir)
		return
	}
	c.pool.cells++
	c.e.release(ctx, c, c.plan.PoolKey, c.pool, appliedObjects(c.applied...), operatorNamespaces(c.plan.cni()), c.wanted())
}

// collect saves the cell's artifacts: with a cluster, its objects, logs
// and node journals; without one, the preflight's audit.
func (c *cellRun) collect(ctx context.Context) {
	dir := c.e.opts.ArtifactsDir
	if dir == "" || c.collected {
		return
	}
	c.collected = true
	dir = filepath.Join(dir, c.plan.Cell.ID())
	if c.client == nil {
		if c.audit == nil {
			return
		}
		if err := writeAudit(dir, c.audit); err != nil {
			c.log.Infof("artifacts: %v", err)
			return
		}
		c.result.Artifacts = dir
		return
	}
	_ = c.phase("artifacts", "artifacts", func() ([]matrix.Evidence, error) {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		err := artifacts.Collect(actx, dir, c.client, c.cl.Nodes)
		c.result.Artifacts = dir
		if aerr := writeAudit(dir, c.audit); aerr != nil {
			err = errors.Join(err, aerr)
		}
		for name, src := range c.cl.Logs {
			if cerr := copyFile(src, filepath.Join(dir, "provider", name)); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}
		if err != nil {
			// Partial artifacts are still useful; record what failed without
			// turning the cell into an infrastructure error.
			c.log.Infof("some artifacts could not be collected: %v", err)
		}
		return []matrix.Evidence{{Check: "artifacts", Target: dir, OK: true}}, nil
	})
}

// teardown deletes the cell's cluster, or keeps it with how to reach it.
func (c *cellRun) teardown(ctx context.Context, prov cluster.Provider, cl *cluster.Cluster, workDir string) {
	if c.e.opts.Keep && c.plan.onExisting() {
		c.record(matrix.Phase{Name: "teardown", Step: "teardown", Outcome: matrix.Skipped, Start: time.Now(), Error: "kept (--keep)"})
		c.log.Infof("kept what the run made in %s: namespace %s (and, in install mode, the CNI it applied); remove it with cnimatrix gc --kubeconfig FILE", cl.Name, checks.DefaultNamespace)
		return
	}
	if c.e.opts.Keep {
		c.record(matrix.Phase{Name: "teardown", Step: "teardown", Outcome: matrix.Skipped, Start: time.Now(), Error: "kept (--keep)"})
		c.log.Infof("kept cluster %s: export KUBECONFIG=%s; kubectl get pods -A   (delete: kind delete cluster --name %s, or cnimatrix gc)",
			cl.Name, filepath.Join(workDir, "kubeconfig"), cl.Name)
		return
	}
	c.infraPhase("teardown", func() ([]matrix.Evidence, error) {
		return nil, deleteCluster(ctx, prov, cl.Name, workDir)
	})
}

// infraPhase is phase for the cell's end: a failure there is the
// harness's (infra-error), and the verdict stands beside it.
func (c *cellRun) infraPhase(name string, fn func() ([]matrix.Evidence, error)) error {
	err := c.phase(name, name, fn)
	last := &c.result.Phases[len(c.result.Phases)-1]
	last.Infra = true
	if err != nil {
		last.Outcome = matrix.InfraError
	}
	return err
}

// deleteCluster deletes a cluster and, once it is gone, its work folder.
// It runs on a context of its own: a cell or run that was interrupted must
// still not leave its cluster behind.
func deleteCluster(ctx context.Context, prov cluster.Provider, name, workDir string) error {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Minute)
	defer cancel()
	if err := prov.Delete(dctx, name); err != nil {
		return err
	}
	_ = os.RemoveAll(workDir)
	return nil
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

// writeAudit saves the cell's audit as preflight.json in its artifacts
// folder.
func writeAudit(dir string, rep *archaudit.Report) error {
	if rep == nil {
		return nil
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return artifacts.WriteRedacted(filepath.Join(dir, "preflight.json"), append(b, '\n'))
}
