package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"

	"github.com/cnimatrix/cnimatrix/internal/checks"
	"github.com/cnimatrix/cnimatrix/internal/cluster"
	"github.com/cnimatrix/cnimatrix/internal/install"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
	"github.com/cnimatrix/cnimatrix/internal/uninstall"
)

// PhaseUninstall removes a cell's CNI from a cluster that the next cell
// reuses (scenario reuseClusters, cnimatrix run --reuse-clusters).
const PhaseUninstall = "uninstall"

// pooled is a cluster waiting for its next cell, its CNI removed.
type pooled struct {
	cl       *cluster.Cluster
	prov     cluster.Provider
	workDir  string
	baseline *uninstall.Baseline
	// cells is how many cells ran on it so far; first names the one it was
	// made for.
	cells int
	first string
}

// reuses reports whether s's cells share clusters. --keep wins: a kept
// cluster is one left as its cell left it.
func (e *Engine) reuses(s *scenario.Scenario) bool {
	return (e.opts.ReuseClusters || s.ReuseClusters) && !e.opts.Keep
}

// PoolKey is poolKey, for the shells: cells with one key can share a
// cluster, so a shard keeps them together.
func PoolKey(s *scenario.Scenario, cell matrix.Cell) string { return poolKey(s, cell) }

// poolKey is what makes two cells able to share a cluster: the same nodes
// (provider, Kubernetes, arch, count; the node image follows from them),
// networks and, for VM nodes, the same preloaded harness images.
func poolKey(s *scenario.Scenario, cell matrix.Cell) string {
	return fmt.Sprintf("%s|%s|%s|%d|%s|%s|%s", cell.Provider, cell.Kubernetes, cell.Arch, s.Nodes, s.PodSubnet, s.ServiceSub, s.CNI.Name)
}

// PlanReuse tells the engine which cells of s will run, so that the last
// cell of a cluster deletes it at once instead of uninstalling its CNI for
// nobody. Without a plan every reused cluster is uninstalled after each
// cell and deleted by Close.
func (e *Engine) PlanReuse(s *scenario.Scenario, cells []matrix.Cell) {
	if !e.reuses(s) {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range cells {
		if s.SkipFor(c) == nil { // a skipped cell needs no cluster
			e.remaining[poolKey(s, c)]++
		}
	}
}

// startReuse counts a cell of key as started and reports whether a
// planned later cell will need its cluster (true when there is no plan).
func (e *Engine) startReuse(key string) (wanted func() bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	n, planned := e.remaining[key]
	if !planned {
		return func() bool { return true }
	}
	if n > 0 {
		e.remaining[key] = n - 1
	}
	return func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.remaining[key] > 0
	}
}

// takePooled removes and returns a waiting cluster for key, or nil.
func (e *Engine) takePooled(key string) *pooled {
	e.mu.Lock()
	defer e.mu.Unlock()
	list := e.pool[key]
	if len(list) == 0 {
		return nil
	}
	p := list[len(list)-1]
	e.pool[key] = list[:len(list)-1]
	return p
}

func (e *Engine) putPooled(key string, p *pooled) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.pool[key] = append(e.pool[key], p)
}

// closePool deletes the clusters still waiting for a cell.
func (e *Engine) closePool(ctx context.Context) error {
	e.mu.Lock()
	var all []*pooled
	for k, list := range e.pool {
		all = append(all, list...)
		delete(e.pool, k)
	}
	e.mu.Unlock()
	var errs []error
	for _, p := range all {
		done := e.log.Phase(fmt.Sprintf("delete reused cluster %s (%d cells ran on it)", p.cl.Name, p.cells))
		err := deleteCluster(ctx, p.prov, p.cl.Name, p.workDir)
		done(err)
		if err != nil {
			errs = append(errs, fmt.Errorf("delete reused cluster %s: %w", p.cl.Name, err))
		}
	}
	return errors.Join(errs...)
}

// reusedEvidence says which cluster a cell got and what ran on it before.
func reusedEvidence(p *pooled) []matrix.Evidence {
	return []matrix.Evidence{{Check: "cluster", Target: p.cl.Name, OK: true,
		Detail: fmt.Sprintf("reused: made for %s, %d cell(s) ran on it before, each CNI uninstalled and every node back to its baseline", p.first, p.cells)}}
}

// baselineEvidence records what the nodes had before any CNI: what an
// uninstall must return them to.
func baselineEvidence(b *uninstall.Baseline) []matrix.Evidence {
	var ev []matrix.Evidence
	for node, st := range b.Nodes {
		ev = append(ev, matrix.Evidence{Check: "baseline", Source: node, Target: "node", OK: true,
			Detail: fmt.Sprintf("%d paths in the CNI directories, %d links, %d routes, %d iptables chains, %d rules", len(st.Paths), len(st.Links), len(st.Routes), len(st.Chains), len(st.Rules))})
	}
	return ev
}

// release hands a reused cell's cluster on: its CNI is uninstalled (phase
// "uninstall") and the cluster waits for the next cell of its key. A cluster
// that did not come back clean is deleted instead.
func (e *Engine) release(ctx context.Context, run *cellRun, key string, p *pooled, applied []*unstructured.Unstructured, operated []string, wanted bool) {
	if !wanted {
		run.teardown(ctx, p.prov, p.cl, p.workDir)
		return
	}
	client := run.client
	cfg, err := p.cl.RESTConfig()
	if err == nil && client == nil {
		client, err = kubernetes.NewForConfig(cfg)
	}
	if err == nil {
		err = run.infraPhase(PhaseUninstall, func() ([]matrix.Evidence, error) {
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 8*time.Minute)
			defer cancel()
			steps, err := uninstall.Run(uctx, uninstall.Target{
				Config: cfg, Client: client, Nodes: p.cl.Nodes, Objects: applied,
				Namespaces: []string{checks.DefaultNamespace}, Operated: operated, Baseline: p.baseline,
			})
			var ev []matrix.Evidence
			for _, s := range steps {
				ev = append(ev, matrix.Evidence{Check: PhaseUninstall + " " + s.Name, Target: s.Target, OK: s.OK, Detail: s.Detail})
			}
			return ev, err
		})
	}
	if err != nil {
		run.log.Infof("cluster %s is not reused: %v", p.cl.Name, err)
		run.teardown(ctx, p.prov, p.cl, p.workDir)
		return
	}
	e.putPooled(key, p)
}

// appliedObjects merges what the cell applied, without repeats (an upgrade
// applies most objects twice).
func appliedObjects(groups ...[]*unstructured.Unstructured) []*unstructured.Unstructured {
	seen := map[string]bool{}
	var out []*unstructured.Unstructured
	for _, g := range groups {
		for _, o := range g {
			k := install.Ref(o)
			if seen[k] {
				continue
			}
			seen[k] = true
			out = append(out, o)
		}
	}
	return out
}
