package checks

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/cnimatrix/cnimatrix/internal/install"
)

func archNode(name, arch string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelArchStable: arch}}}
}

func archPod(name, node, app string, ready bool) *corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kube-system", Labels: map[string]string{"k8s-app": app}},
		Spec:       corev1.PodSpec{NodeName: node},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: app, Image: "quay.io/calico/" + app + ":v3.32.1", ImageID: "quay.io/calico/" + app + "@sha256:abc", Ready: ready, RestartCount: 2,
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Error"}}}}},
	}
}

func archWorkloads() []runtime.Object {
	sel := func(app string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": app}}
	}
	return []runtime.Object{
		&appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "calico-node", Namespace: "kube-system"}, Spec: appsv1.DaemonSetSpec{Selector: sel("calico-node")}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "calico-kube-controllers", Namespace: "kube-system"}, Spec: appsv1.DeploymentSpec{Selector: sel("calico-kube-controllers")}},
	}
}

// A controller that ran only on the amd64 control plane of an arm64 cell is
// arch-not-exercised, whatever its readiness; on an arm64 node it passes.
func TestCNIWorkloadArch(t *testing.T) {
	ws := []install.Workload{{Kind: "DaemonSet", Namespace: "kube-system", Name: "calico-node"}, {Kind: "Deployment", Namespace: "kube-system", Name: "calico-kube-controllers"}}
	run := func(kcNode string) Result {
		objs := append(archWorkloads(),
			archNode("cp", "amd64"), archNode("vm", "arm64"),
			archPod("calico-node-a", "cp", "calico-node", true), archPod("calico-node-b", "vm", "calico-node", true),
			archPod("kc-1", kcNode, "calico-kube-controllers", true))
		env := &Env{Client: fake.NewClientset(objs...), Arch: "arm64", CNIWorkloads: ws, Timeout: 10 * time.Second}
		return CNIWorkloadArch{}.Run(context.Background(), env)
	}
	r := run("cp")
	if r.OK || !strings.HasPrefix(r.Err, ArchNotExercised+": deployment kube-system/calico-kube-controllers has no Ready pod on a arm64 node: kc-1 on cp (amd64)") {
		t.Errorf("controller on the amd64 control plane: %+v", r)
	}
	found := false
	for _, e := range r.Evidence {
		if e.Target == "deployment kube-system/calico-kube-controllers" && strings.Contains(e.Detail, "node cp (arch amd64)") &&
			strings.Contains(e.Detail, "quay.io/calico/calico-kube-controllers:v3.32.1 (sha256:abc), 2 restarts, last terminated Error") {
			found = true
		}
	}
	if !found {
		t.Errorf("evidence lacks the pod's node, arch, image and digest: %+v", r.Evidence)
	}
	if r := run("vm"); !r.OK {
		t.Errorf("controller on the arm64 node: %+v", r)
	}
	if r := (CNIWorkloadArch{}).Run(context.Background(), &Env{Client: fake.NewClientset(), Arch: "arm64", Timeout: time.Second}); r.OK {
		t.Error("no workloads passed")
	}
}
