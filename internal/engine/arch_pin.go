package engine

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/cnimatrix/cnimatrix/internal/calico"
	"github.com/cnimatrix/cnimatrix/internal/install"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

// archLabel is the node label the kubelet sets to its arch.
const archLabel = "kubernetes.io/arch"

// pinToArch keeps a mixed cluster's foreign-arch control plane out of the
// question: every Deployment and StatefulSet of objs (DaemonSets run on
// every node anyway) gets the nodeSelector kubernetes.io/arch=arch, so a
// controller that tolerates control planes runs its image for the arch
// under test, as it would on a cluster of that arch alone. It returns one
// line per workload it pinned, for the evidence: the harness says what it
// changed.
func pinToArch(objs []*unstructured.Unstructured, arch string) ([]string, error) {
	var pinned []string
	for _, o := range objs {
		switch o.GetKind() {
		case "Deployment", "StatefulSet":
		default:
			continue
		}
		sel, _, err := unstructured.NestedStringMap(o.Object, "spec", "template", "spec", "nodeSelector")
		if err != nil {
			return nil, fmt.Errorf("%s %s/%s: nodeSelector: %w", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
		if sel == nil {
			sel = map[string]string{}
		}
		if cur, ok := sel[archLabel]; ok && cur != arch {
			return nil, fmt.Errorf("%s %s/%s selects %s=%s: it cannot run on the %s nodes under test", o.GetKind(), o.GetNamespace(), o.GetName(), archLabel, cur, arch)
		}
		sel[archLabel] = arch
		if err := unstructured.SetNestedStringMap(o.Object, sel, "spec", "template", "spec", "nodeSelector"); err != nil {
			return nil, err
		}
		pinned = append(pinned, fmt.Sprintf("%s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName()))
	}
	return pinned, nil
}

// cniWorkloads are the workloads the CNI's install runs: the DaemonSets and
// Deployments it applied and, for an operator install, what the operator
// deploys.
func cniWorkloads(applied [][]*unstructured.Unstructured, cni *scenario.CNISpec) []install.Workload {
	var out []install.Workload
	seen := map[install.Workload]bool{}
	add := func(ws []install.Workload) {
		for _, w := range ws {
			if !seen[w] {
				seen[w] = true
				out = append(out, w)
			}
		}
	}
	for _, objs := range applied {
		add(install.Workloads(objs))
	}
	if operatorInstall(cni) {
		add(calico.OperatorWorkloads())
	}
	return out
}
