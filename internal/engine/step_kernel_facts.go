package engine

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/calico"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/cnimatrix/cnimatrix/internal/checks"
	"github.com/cnimatrix/cnimatrix/internal/cluster"
	"github.com/cnimatrix/cnimatrix/internal/diagnose"
	"github.com/cnimatrix/cnimatrix/internal/kernelfacts"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

// PhaseKernelFacts reads what each node's kernel offers a CNI before the CNI
// is installed, so that a cell asking for a tunnel its kernel cannot carry
// fails in seconds with root cause kernel-feature, not minutes later with
// pods that never turn ready.
const PhaseKernelFacts = "kernel-facts"

// encapsulation is the tunnel the cell's CNI will set up: for Calico, what
// the configured manifest objs say (calico.yaml's pool modes, or an
// operator install's Installation, whose default is VXLANCrossSubnet), the
// scenario's option when they cannot be read; the offline flannel's vxlan
// backend.
func encapsulation(cni *scenario.CNISpec, objs []*unstructured.Unstructured) string {
	switch cni.Name {
	case "calico":
		if objs != nil {
			if e, err := calico.PoolEncapsulation(objs); err == nil {
				return string(e)
			}
		}
		if cni.Calico != nil && cni.Calico.Encapsulation != "" {
			return string(cni.Calico.Encapsulation)
		}
		return string(calico.IPIP)
	case "flannel":
		return kernelfacts.EncapVXLAN
	}
	return ""
}

// earlyFacts reads the kernels of nodes that boot long before their
// cluster is ready (cluster.Spec.OnBoot): under emulation the probe costs
// a VM ~10 s, which the wait for the control plane hides.
type earlyFacts struct {
	mu      sync.Mutex
	pending map[string]chan factsResult
}

type factsResult struct {
	f   kernelfacts.Facts
	err error
}

// onBoot is the cluster.Spec.OnBoot of a cell: ctx is the cell's, not the
// provider's create call's, so the probe outlives the create.
func (ef *earlyFacts) onBoot(ctx context.Context) func(cluster.Node) {
	return func(n cluster.Node) {
		ch := make(chan factsResult, 1)
		ef.mu.Lock()
		if ef.pending == nil {
			ef.pending = map[string]chan factsResult{}
		}
		ef.pending[n.Name] = ch
		ef.mu.Unlock()
		go func() {
			pctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
			defer cancel()
			f, err := kernelfacts.Probe(pctx, n)
			ch <- factsResult{f, err}
		}()
	}
}

// probe returns every node's facts: those read at boot, the rest read now.
// A boot-time probe that failed is tried again.
func (ef *earlyFacts) probe(ctx context.Context, nodes []cluster.Node) ([]kernelfacts.Facts, error) {
	ef.mu.Lock()
	pending := ef.pending
	ef.mu.Unlock()
	early := map[string]kernelfacts.Facts{}
	var rest []cluster.Node
	for _, n := range nodes {
		ch, ok := pending[n.Name]
		if !ok {
			rest = append(rest, n)
			continue
		}
		select {
		case r := <-ch:
			if r.err != nil {
				rest = append(rest, n)
				continue
			}
			early[n.Name] = r.f
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	now, err := kernelfacts.ProbeAll(ctx, rest)
	for _, f := range now {
		early[f.Node] = f
	}
	var out []kernelfacts.Facts
	for _, n := range nodes {
		if f, ok := early[n.Name]; ok {
			out = append(out, f)
		}
	}
	return out, err
}

// stepKernelFacts reads each node's kernel (those read at boot are not
// read again) and requires the tunnel the configured manifest sets up.
var stepKernelFacts = Step{Name: PhaseKernelFacts,
	// An existing cluster's nodes run no command of cnimatrix.
	Applies: func(c *cellRun) bool { return !c.plan.onExisting() }, Run: func(ctx context.Context, c *cellRun) StepResult {
		kctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		defer cancel()
		if c.facts == nil {
			c.facts = &earlyFacts{} // a reused cluster: nothing read at boot
		}
		facts, err := c.facts.probe(kctx, c.cl.Nodes)
		var ev []matrix.Evidence
		for _, f := range facts {
			ev = append(ev, matrix.Evidence{Check: PhaseKernelFacts, Source: f.Node, Target: "kernel", OK: true, Detail: f.String()})
		}
		if err != nil {
			return StepResult{Evidence: ev, Err: err}
		}
		if err := kernelfacts.Require(facts, c.plan.Encapsulation); err != nil {
			for i := range ev {
				ev[i].OK = false
			}
			r := StepResult{Evidence: ev, Err: err}
			if _, missing := errors.AsType[*kernelfacts.MissingError](err); missing {
				r.Cause = diagnose.KernelFeature
			}
			return r
		}
		return StepResult{Evidence: ev}
	}}

// cniChecks are the checks a cell runs: the standard ones, the arch
// coverage of the CNI's workloads and, for Calico, its own, pinned to the
// pool and tunnel (encap) of the manifest the cell applies.
func cniChecks(cni *scenario.CNISpec, podSubnet, encap string) []checks.Check {
	// Every CNI workload must have run on the arch under test.
	out := append(checks.Default(), checks.CNIWorkloadArch{})
	if cni.Name == "calico" {
		out = append(out, checks.CalicoFor(podSubnet, encap)...)
	}
	return out
}
