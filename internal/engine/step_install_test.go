package engine

import (
	"reflect"
	"testing"

	"github.com/cnimatrix/cnimatrix/internal/archaudit"
	"github.com/cnimatrix/cnimatrix/internal/install"
)

// A cni-ready wait that ran out before the node ran a container whose image
// the preflight flagged waits once more, and only for such a container: one
// that ended (crashed) already has the node's verdict, and one whose image
// the preflight passed is an ordinary not-ready pod.
func TestFlaggedNotRun(t *testing.T) {
	ds := install.Workload{Kind: "DaemonSet", Namespace: "kube-flannel", Name: "kube-flannel-ds"}
	audit := &archaudit.Report{Arch: "arm64", Findings: []archaudit.Finding{
		{Workload: "DaemonSet kube-flannel/kube-flannel-ds", Container: "install-cni", InitContainer: true, Kind: archaudit.Mislabeled},
		{Workload: "DaemonSet kube-flannel/kube-flannel-ds", Container: "kube-flannel", Kind: archaudit.OK},
	}}
	pod := func(init install.ContainerReport) install.PodReport {
		return install.PodReport{Name: "kube-flannel-ds-x", Node: "vm-1", Containers: []install.ContainerReport{
			init,
			{Name: "kube-flannel", State: "waiting", Reason: "PodInitializing"},
		}}
	}
	for _, tc := range []struct {
		name string
		init install.ContainerReport
		want []string
	}{
		{"flagged init container not run yet", install.ContainerReport{Name: "install-cni", Init: true, State: "waiting", Reason: "PodInitializing"},
			[]string{"init container install-cni of pod kube-flannel-ds-x"}},
		{"flagged init container crashed already", install.ContainerReport{Name: "install-cni", Init: true, State: "waiting", Reason: "CrashLoopBackOff", Restarts: 2, LastReason: "Error"}, nil},
		// started, but the kernel's refusal not reported yet (seen under load)
		{"flagged init container running", install.ContainerReport{Name: "install-cni", Init: true, State: "running"},
			[]string{"init container install-cni of pod kube-flannel-ds-x"}},
		{"flagged init container terminated", install.ContainerReport{Name: "install-cni", Init: true, State: "terminated", Reason: "Error"}, nil},
		{"flagged container ready", install.ContainerReport{Name: "install-cni", Init: true, State: "running", Ready: true}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nr := &install.NotReadyError{Workloads: []install.WorkloadReport{{Workload: ds, Pods: []install.PodReport{pod(tc.init)}}}}
			if got := flaggedNotRun(nr, audit); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("flaggedNotRun = %q, want %q", got, tc.want)
			}
		})
	}
	nr := &install.NotReadyError{Workloads: []install.WorkloadReport{{Workload: ds, Pods: []install.PodReport{pod(install.ContainerReport{Name: "install-cni", Init: true, State: "waiting"})}}}}
	if got := flaggedNotRun(nr, nil); got != nil {
		t.Errorf("without a preflight: %q, want nothing", got)
	}
	other := *audit
	other.Findings = []archaudit.Finding{{Workload: "DaemonSet kube-system/other", Container: "install-cni", InitContainer: true, Kind: archaudit.Mislabeled}}
	if got := flaggedNotRun(nr, &other); got != nil {
		t.Errorf("finding of another workload: %q, want nothing", got)
	}
}
