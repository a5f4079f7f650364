package engine

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/cnimatrix/cnimatrix/internal/diagnose"
	"github.com/cnimatrix/cnimatrix/internal/install"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

const pinManifest = `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: calico-node, namespace: kube-system}
spec:
  template:
    spec:
      containers: [{name: calico-node, image: quay.io/calico/node:v3.32.1}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: calico-kube-controllers, namespace: kube-system}
spec:
  template:
    spec:
      nodeSelector: {kubernetes.io/os: linux}
      tolerations: [{key: node-role.kubernetes.io/control-plane, effect: NoSchedule}]
      containers: [{name: calico-kube-controllers, image: quay.io/calico/kube-controllers:v3.32.1}]
`

// In a mixed cluster the harness pins Deployments (not DaemonSets) to the
// arch under test, keeps their own selector, and says what it pinned.
func TestPinToArch(t *testing.T) {
	objs, err := install.ParseManifest([]byte(pinManifest))
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := pinToArch(objs, "arm64")
	if err != nil || len(pinned) != 1 || pinned[0] != "Deployment kube-system/calico-kube-controllers" {
		t.Fatalf("pinned %v, %v", pinned, err)
	}
	sel, _, _ := unstructured.NestedStringMap(objs[1].Object, "spec", "template", "spec", "nodeSelector")
	if sel["kubernetes.io/arch"] != "arm64" || sel["kubernetes.io/os"] != "linux" {
		t.Errorf("Deployment nodeSelector %v", sel)
	}
	if ds, _, _ := unstructured.NestedStringMap(objs[0].Object, "spec", "template", "spec", "nodeSelector"); ds["kubernetes.io/arch"] != "" {
		t.Errorf("DaemonSet pinned: %v", ds)
	}
	// A workload that selects the other arch cannot be asked about this one.
	if _, err := pinToArch(objs, "amd64"); err == nil || !strings.Contains(err.Error(), "selects kubernetes.io/arch=arm64") {
		t.Errorf("conflicting selector: %v", err)
	}
	provs := dryRunProviders()
	mixed := func(arch, provider string) bool {
		prov, err := providerByName(provider, provs)
		if err != nil {
			t.Fatal(err)
		}
		return (&CellPlan{Cell: matrix.Cell{Arch: arch, Provider: provider}, Layout: prov.Layout(arch, 2)}).mixed()
	}
	if !mixed("arm64", "qemu") || mixed("amd64", "kind") {
		t.Error("mixed: an arm64 qemu cell on this amd64 host has an amd64 control plane; a kind cell does not")
	}
}

// A CNI workload that did not run on the arch under test is the cell's root
// cause arch-not-exercised, not a pass and not connectivity.
func TestRootCauseArchNotExercised(t *testing.T) {
	r := matrix.Result{Phases: []matrix.Phase{
		{Name: "cni-ready", Outcome: matrix.Pass},
		{Name: "check:CNIWorkloadArch", Outcome: matrix.Fail, Error: "arch-not-exercised: deployment kube-system/x has no Ready pod on a arm64 node: x-1 on cp (amd64)"},
	}}
	if got := diagnose.RootCause(r); got != diagnose.ArchNotExercised {
		t.Errorf("root cause %q", got)
	}
	// The check's typed cause is read before any text.
	typed := matrix.Result{Phases: []matrix.Phase{{Name: "check:CNIWorkloadArch", Outcome: matrix.Fail, Error: "timed out", Cause: diagnose.ArchNotExercised}}}
	if got := diagnose.RootCause(typed); got != diagnose.ArchNotExercised {
		t.Errorf("typed cause: root cause %q", got)
	}
}
