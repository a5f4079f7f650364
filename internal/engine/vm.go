package engine

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

// cpuShare is the part of a cell's waiting that grows with the nodes' CPU
// slowdown. Measured here: a QEMU TCG worker ran the calibration workload
// ~30x slower than the host, yet joined and turned Ready ~7x slower than
// a kind node (83 s against ~12 s), the rest being I/O and waiting on the
// native control plane: 7/30 ≈ 0.25.
const cpuShare = 0.25

// minEmulatedScale is the least an emulated node's waits grow. The
// calibration is a poor predictor on a shared host: measured here it gave
// 4.4x to 23.9x for the same VM, and the VM's cni-ready took 49 to 190 s
// with no relation to it (4.4x came with 69 s, 17x with 49 s). A factor of
// 1.1 from a low reading made a 60 s cni-ready wait 66 s, and a cell that
// passes in 70-84 s failed as "timeout". The waits are deadlines, not
// sleeps: a floor costs a passing cell nothing, and a container its node
// refuses ends the wait at once (flaggedNotRun), so only a cell that
// really hangs waits longer.
const minEmulatedScale = 5

// waitScale is the factor by which a cell's waits grow on emulated nodes
// slowdown times slower than the host's CPU: the calibrated share, never
// below minEmulatedScale.
func waitScale(slowdown float64) float64 { return max(minEmulatedScale, slowdown*cpuShare) }

// clusterEvidence records the provider's milestones, relative to the first
// one, and the measured slowdown.
func clusterEvidence(cl *cluster.Cluster) []matrix.Evidence {
	var ev []matrix.Evidence
	if cl.Emulated {
		ev = append(ev, matrix.Evidence{Check: "cluster", Source: cl.Provider, Target: cl.Name, OK: true,
			Detail: fmt.Sprintf("emulated nodes: CPU slowdown %.1fx against the host (calibration)", cl.Slowdown)})
	}
	for _, note := range cl.Notes {
		ev = append(ev, matrix.Evidence{Check: "cluster", Source: cl.Provider, Target: cl.Name, OK: true, Detail: note})
	}
	start := map[string]time.Time{}
	for _, m := range cl.Marks {
		if _, ok := start[m.Node]; !ok {
			start[m.Node] = m.At
		}
		ev = append(ev, matrix.Evidence{Check: "cluster", Source: cl.Provider, Target: "node " + m.Node, OK: true,
			Detail: fmt.Sprintf("%s at +%.1fs", m.Event, m.At.Sub(start[m.Node]).Seconds())})
	}
	for _, n := range cl.Nodes {
		ev = append(ev, matrix.Evidence{Check: "cluster", Source: cl.Provider, Target: "node " + n.Name, OK: true,
			Detail: fmt.Sprintf("%s %s %s", n.Role, n.Arch, n.InternalIP)})
	}
	return ev
}

// vmReadyEvidence says, for each node with a "vm-started" mark, how long
// after its VM started the node turned Ready (the Ready condition's
// transition time has a resolution of one second).
func vmReadyEvidence(ctx context.Context, client kubernetes.Interface, cl *cluster.Cluster) []matrix.Evidence {
	started := map[string]time.Time{}
	for _, m := range cl.Marks {
		if m.Event == "vm-started" {
			started[m.Node] = m.At
		}
	}
	if len(started) == 0 {
		return nil
	}
	list, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return []matrix.Evidence{{Check: "cni-ready", Source: "api", OK: false, Detail: "list nodes: " + err.Error()}}
	}
	var ev []matrix.Evidence
	for _, n := range list.Items {
		t0, ok := started[n.Name]
		if !ok {
			continue
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ev = append(ev, matrix.Evidence{Check: "cni-ready", Source: "api", Target: "node " + n.Name, OK: true,
					Detail: fmt.Sprintf("Ready %.0fs after its VM started", c.LastTransitionTime.Sub(t0).Seconds())})
			}
		}
	}
	return ev
}
