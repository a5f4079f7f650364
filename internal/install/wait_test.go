package install

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestDaemonSetReady(t *testing.T) {
	for _, tc := range []struct {
		name    string
		gen     int64
		st      appsv1.DaemonSetStatus
		ok      bool
		problem string
	}{
		{"ready", 1, appsv1.DaemonSetStatus{ObservedGeneration: 1, DesiredNumberScheduled: 2, NumberReady: 2, UpdatedNumberScheduled: 2}, true, ""},
		{"not scheduled anywhere", 1, appsv1.DaemonSetStatus{ObservedGeneration: 1}, false, "no node runs it"},
		{"stale generation", 2, appsv1.DaemonSetStatus{ObservedGeneration: 1, DesiredNumberScheduled: 2, NumberReady: 2, UpdatedNumberScheduled: 2}, false, "has not observed generation 2"},
		{"rolling", 1, appsv1.DaemonSetStatus{ObservedGeneration: 1, DesiredNumberScheduled: 2, NumberReady: 2, UpdatedNumberScheduled: 1}, false, "1/2 pods updated"},
		{"one not ready", 1, appsv1.DaemonSetStatus{ObservedGeneration: 1, DesiredNumberScheduled: 2, NumberReady: 1, UpdatedNumberScheduled: 2}, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Generation: tc.gen}, Status: tc.st}
			ok, _, _, problem := DaemonSetReady(ds)
			if ok != tc.ok || !strings.Contains(problem, tc.problem) || (tc.problem == "" && problem != "") {
				t.Fatalf("got %v %q, want %v %q", ok, problem, tc.ok, tc.problem)
			}
		})
	}
}

func TestDeploymentReady(t *testing.T) {
	two := int32(2)
	zero := int32(0)
	for _, tc := range []struct {
		name     string
		replicas *int32
		st       appsv1.DeploymentStatus
		ok       bool
		problem  string
	}{
		{"ready", &two, appsv1.DeploymentStatus{ObservedGeneration: 1, UpdatedReplicas: 2, AvailableReplicas: 2}, true, ""},
		{"default one replica", nil, appsv1.DeploymentStatus{ObservedGeneration: 1, UpdatedReplicas: 1, AvailableReplicas: 1}, true, ""},
		{"scaled to zero", &zero, appsv1.DeploymentStatus{ObservedGeneration: 1}, true, ""},
		{"unavailable", &two, appsv1.DeploymentStatus{ObservedGeneration: 1, UpdatedReplicas: 2, AvailableReplicas: 1}, false, ""},
		{"replica failure", &two, appsv1.DeploymentStatus{ObservedGeneration: 1, Conditions: []appsv1.DeploymentCondition{
			{Type: appsv1.DeploymentReplicaFailure, Status: corev1.ConditionTrue, Reason: "FailedCreate", Message: `pods "x" is forbidden: error looking up service account kube-system/x`},
		}}, false, "0/2 replicas updated; FailedCreate: pods \"x\" is forbidden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Generation: 1}, Spec: appsv1.DeploymentSpec{Replicas: tc.replicas}, Status: tc.st}
			ok, _, _, problem := DeploymentReady(d)
			if ok != tc.ok || !strings.HasPrefix(problem, tc.problem) || (tc.problem == "" && problem != "") {
				t.Fatalf("got %v %q, want %v %q", ok, problem, tc.ok, tc.problem)
			}
		})
	}
}

const pullMsg = `Back-off pulling image "docker.io/cnimatrix/nope:v1": ErrImagePull: failed to pull and unpack image "docker.io/cnimatrix/nope:v1": failed to resolve reference "docker.io/cnimatrix/nope:v1": docker.io/cnimatrix/nope:v1: not found`

// flannelFixture is a DaemonSet scheduled on two nodes whose pods cannot pull
// their image, as the API server reports it (statuses and events copied in
// shape from a real kubelet's).
func flannelFixture() *fake.Clientset {
	labels := map[string]string{"app": "flannel"}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-flannel-ds", Namespace: "kube-flannel", Generation: 1, UID: "ds-uid"},
		Spec:       appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}},
		Status:     appsv1.DaemonSetStatus{ObservedGeneration: 1, DesiredNumberScheduled: 2, UpdatedNumberScheduled: 2, NumberReady: 0},
	}
	pod := func(name, node string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kube-flannel", Labels: labels, UID: types.UID("uid-" + name)},
			Spec:       corev1.PodSpec{NodeName: node},
			Status: corev1.PodStatus{
				Phase: corev1.PodPending,
				Conditions: []corev1.PodCondition{
					{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady", Message: "containers with unready status: [kube-flannel]"},
				},
				InitContainerStatuses: []corev1.ContainerStatus{{
					Name: "install-cni", Ready: true,
					State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed", ExitCode: 0}},
				}},
				ContainerStatuses: []corev1.ContainerStatus{{
					Name:  "kube-flannel",
					State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: pullMsg}},
				}},
			},
		}
	}
	ready := pod("kube-flannel-ds-ok", "n3")
	ready.Status.Phase = corev1.PodRunning
	ready.Status.Conditions[0].Status = corev1.ConditionTrue
	other := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "unrelated", Namespace: "kube-flannel", Labels: map[string]string{"app": "x"}}}
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	ev := func(name, reason, msg string, count int32, at time.Time) *corev1.Event {
		return &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Name: name + "." + reason + "." + at.Format("150405"), Namespace: "kube-flannel"},
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: name, Namespace: "kube-flannel"},
			Type:           corev1.EventTypeWarning, Reason: reason, Message: msg, Count: count,
			LastTimestamp: metav1.NewTime(at),
		}
	}
	normal := ev("kube-flannel-ds-abc", "Pulling", `Pulling image "docker.io/cnimatrix/nope:v1"`, 3, t0)
	normal.Type = corev1.EventTypeNormal
	return fake.NewClientset(ds,
		pod("kube-flannel-ds-abc", "x"), pod("kube-flannel-ds-def", "y"), ready, other,
		ev("kube-flannel-ds-abc", "Failed", `Failed to pull image "docker.io/cnimatrix/nope:v1": rpc error: code = NotFound desc = failed to pull and unpack image "docker.io/cnimatrix/nope:v1": failed to resolve reference "docker.io/cnimatrix/nope:v1": docker.io/cnimatrix/nope:v1: not found`, 4, t0.Add(time.Second)),
		ev("kube-flannel-ds-abc", "Failed", "Error: ImagePullBackOff", 9, t0.Add(3*time.Second)),
		ev("kube-flannel-ds-abc", "BackOff", `Back-off pulling image "docker.io/cnimatrix/nope:v1"`, 9, t0.Add(2*time.Second)),
		normal,
	)
}

func TestWaitWorkloadsNotReadyEvidence(t *testing.T) {
	cs := flannelFixture()
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	err := WaitWorkloads(ctx, cs, []Workload{{Kind: "DaemonSet", Namespace: "kube-flannel", Name: "kube-flannel-ds"}}, nil)
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("wait took %s after a 700ms deadline", d)
	}
	var nre *NotReadyError
	if !errors.As(err, &nre) {
		t.Fatalf("error %T %v, want *NotReadyError", err, err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("errors.Is(err, DeadlineExceeded) = false")
	}
	if len(nre.Workloads) != 1 || len(nre.Workloads[0].Pods) != 2 {
		t.Fatalf("workloads %+v", nre.Workloads)
	}
	p := nre.Workloads[0].Pods[0]
	if p.Name != "kube-flannel-ds-abc" || p.Node != "x" || len(p.Events) != 3 || p.Events[1].Reason != "BackOff" {
		t.Errorf("pod report %+v", p)
	}
	msg := err.Error()
	t.Logf("error string:\n%s", msg)
	for _, want := range []string{
		`daemonset kube-flannel/kube-flannel-ds: 0/2 ready; pod kube-flannel-ds-abc on node x (Pending): container kube-flannel waiting ImagePullBackOff: Back-off pulling image "docker.io/cnimatrix/nope:v1": ErrImagePull: failed to pull and unpack image`,
		`; pod kube-flannel-ds-def on node y (Pending): container kube-flannel waiting ImagePullBackOff`,
		`ms: context deadline exceeded)`,
		`(gave up after `,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error string lacks %q", want)
		}
	}
	for _, unwanted := range []string{"install-cni", "kube-flannel-ds-ok", "unrelated", "event BackOff", "event Failed", "Pulling image", "Error: ImagePullBackOff"} {
		if strings.Contains(msg, unwanted) {
			t.Errorf("error string has %q", unwanted)
		}
	}
}

func TestWaitWorkloadsReady(t *testing.T) {
	two := int32(2)
	cs := fake.NewClientset(&appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "coredns", Namespace: "kube-system", Generation: 3},
		Spec:       appsv1.DeploymentSpec{Replicas: &two},
		Status:     appsv1.DeploymentStatus{ObservedGeneration: 3, UpdatedReplicas: 2, AvailableReplicas: 2},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := WaitWorkloads(ctx, cs, []Workload{{Kind: "Deployment", Namespace: "kube-system", Name: "coredns"}}, nil); err != nil {
		t.Fatal(err)
	}
}

func TestWaitWorkloadsMissing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := WaitWorkloads(ctx, fake.NewClientset(), []Workload{{Kind: "Deployment", Namespace: "a", Name: "b"}}, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "deployment a/b: 0/0 ready (not found)") {
		t.Fatalf("err = %v", err)
	}
}

func TestContainerReportCrashLoop(t *testing.T) {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "calico-node-x"},
		Spec:       corev1.PodSpec{NodeName: "w1"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{
			Name: "calico-node", RestartCount: 5,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 2m40s restarting failed container=calico-node pod=calico-node-x"}},
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				Reason: "Error", ExitCode: 1, Message: "exec /usr/bin/calico-node: exec format error\n"}},
		}}},
	}
	got := DescribePod(p, nil).String()
	want := "pod calico-node-x on node w1: container calico-node waiting CrashLoopBackOff: back-off 2m40s restarting failed container=calico-node pod=calico-node-x, 5 restarts, last exit 1 Error: exec /usr/bin/calico-node: exec format error"
	if got != want {
		t.Fatalf("\n got %s\nwant %s", got, want)
	}
}

func TestPodReportUnschedulable(t *testing.T) {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "nginx-1"},
		Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{
			Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable",
			Message: "0/2 nodes are available: 2 node(s) had untolerated taint {node.kubernetes.io/not-ready: }.",
		}}},
	}
	got := DescribePod(p, nil).String()
	want := "pod nginx-1 on node <none> (Pending): PodScheduled: Unschedulable: 0/2 nodes are available: 2 node(s) had untolerated taint {node.kubernetes.io/not-ready: }."
	if got != want {
		t.Fatalf("\n got %s\nwant %s", got, want)
	}
}

// An API server that stops answering at the end of a wait must not erase
// what the wait saw before.
func TestWaitWorkloadsKeepsEvidenceWhenAPIGoesAway(t *testing.T) {
	cs := flannelFixture()
	calls := 0
	cs.PrependReactor("get", "daemonsets", func(action k8stesting.Action) (bool, runtime.Object, error) {
		calls++
		if calls > 1 {
			return true, nil, errors.New(`dial tcp 127.0.0.1:36789: connect: connection refused`)
		}
		return false, nil, nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	err := WaitWorkloads(ctx, cs, []Workload{{Kind: "DaemonSet", Namespace: "kube-flannel", Name: "kube-flannel-ds"}}, nil)
	var nre *NotReadyError
	if !errors.As(err, &nre) || calls < 2 {
		t.Fatalf("err %v after %d calls", err, calls)
	}
	w := nre.Workloads[0]
	if w.Desired != 2 || !strings.Contains(w.Problem, "connection refused") || len(w.Pods) != 2 {
		t.Fatalf("report %+v", w)
	}
	if !strings.HasPrefix(err.Error(), "daemonset kube-flannel/kube-flannel-ds: 0/2 ready (get: dial tcp 127.0.0.1:36789: connect: connection refused); pod kube-flannel-ds-abc") {
		t.Errorf("error %s", err)
	}
}
