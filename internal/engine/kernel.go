package engine

import (
	"context"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/calico"
	"github.com/cnimatrix/cnimatrix/internal/checks"
	"github.com/cnimatrix/cnimatrix/internal/cluster"
	"github.com/cnimatrix/cnimatrix/internal/kernelfacts"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

// PhaseKernelFacts reads what each node's kernel offers a CNI before the CNI
// is installed, so that a cell asking for a tunnel its kernel cannot carry
// fails in seconds with root cause kernel-feature, not minutes later with
// pods that never turn ready.
const PhaseKernelFacts = "kernel-facts"

// encapsulation is the tunnel the cell's CNI will set up: Calico's
// configured one, else calico.yaml's default (IPIP); the offline flannel's
// vxlan backend.
func encapsulation(s *scenario.Scenario) string {
	switch {
	case s.CNI.Calico != nil && s.CNI.Calico.Encapsulation != "":
		return string(s.CNI.Calico.Encapsulation)
	case s.CNI.Name == "calico":
		return string(calico.IPIP)
	case s.CNI.Name == "flannel":
		return kernelfacts.EncapVXLAN
	}
	return ""
}

func (e *Engine) kernelFacts(ctx context.Context, run *cellRun, cl *cluster.Cluster, s *scenario.Scenario) error {
	return run.phase(PhaseKernelFacts, false, func() ([]matrix.Evidence, error) {
		kctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		defer cancel()
		facts, err := kernelfacts.ProbeAll(kctx, cl.Nodes)
		var ev []matrix.Evidence
		for _, f := range facts {
			ev = append(ev, matrix.Evidence{Check: PhaseKernelFacts, Source: f.Node, Target: "kernel", OK: true, Detail: f.String()})
		}
		if err != nil {
			return ev, err
		}
		encap := encapsulation(s)
		if err := kernelfacts.Require(facts, encap); err != nil {
			for i := range ev {
				ev[i].OK = false
			}
			return ev, err
		}
		return ev, nil
	})
}

// cniChecks are the checks a cell runs: the standard ones and, for Calico,
// its own, pinned to the pool and tunnel the scenario asked for.
func cniChecks(s *scenario.Scenario) []checks.Check {
	out := checks.Default()
	if s.CNI.Name == "calico" {
		encap := ""
		if s.CNI.Calico != nil {
			encap = string(s.CNI.Calico.Encapsulation)
		}
		out = append(out, checks.CalicoFor(s.PodSubnet, encap)...)
	}
	return out
}
