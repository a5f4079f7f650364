package install

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func node(name, arch string, taints ...corev1.Taint) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/arch": arch, "kubernetes.io/os": "linux"}},
		Spec: corev1.NodeSpec{Taints: taints}}
}

func daemonSet(desired int32, spec corev1.PodSpec) *appsv1.DaemonSet {
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "cni", Namespace: "kube-system", Generation: 1},
		Spec:       appsv1.DaemonSetSpec{Template: corev1.PodTemplateSpec{Spec: spec}},
		Status: appsv1.DaemonSetStatus{ObservedGeneration: 1, DesiredNumberScheduled: desired, CurrentNumberScheduled: desired,
			UpdatedNumberScheduled: desired, NumberReady: desired, NumberAvailable: desired},
	}
}

// Seen under load: a VM worker registered after the CNI's DaemonSet was
// applied, and the wait passed on the status the controller had written
// for the control plane alone (1/1), though the worker's pod never became
// ready. A DaemonSet scheduled on fewer nodes than it selects is not ready.
func TestDaemonSetNotReadyUntilEveryNodeItSelects(t *testing.T) {
	cp := node("cp", "amd64", corev1.Taint{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule})
	worker := node("w", "arm64", corev1.Taint{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoSchedule})
	all := corev1.PodSpec{Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}}}
	w := []Workload{{Kind: "DaemonSet", Namespace: "kube-system", Name: "cni"}}

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err := WaitWorkloads(ctx, fake.NewClientset(daemonSet(1, all), cp, worker), w, nil)
	if err == nil || !strings.Contains(err.Error(), "scheduled on 1 of the 2 nodes it selects") {
		t.Fatalf("stale status accepted: %v", err)
	}

	cases := map[string]struct {
		spec    corev1.PodSpec
		desired int32
	}{
		"tolerates all, on both":    {all, 2},
		"arm64 only, on the worker": {corev1.PodSpec{NodeSelector: map[string]string{"kubernetes.io/arch": "arm64"}, Tolerations: all.Tolerations}, 1},
		// Both nodes are tainted: it selects neither, and its own count stands.
		"tolerates nothing": {corev1.PodSpec{}, 1},
	}
	for name, c := range cases {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := WaitWorkloads(ctx, fake.NewClientset(daemonSet(c.desired, c.spec), cp, worker), w, nil)
		cancel()
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
