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
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// noPlatformMsg is how containerd 2.x words a pull of an index without the
// node's platform (kubelet's ErrImagePull message).
const noPlatformMsg = `failed to pull and unpack image "docker.io/cnimatrix/flexvol:amd64-only": no match for platform in manifest sha256:0123: not found`

// notFoundMsg is kubelet's ErrImagePull message when the registry answers
// that the image does not exist (containerd 2.x, the run's registry).
const notFoundMsg = `rpc error: code = NotFound desc = failed to pull and unpack image "docker.io/calico/cni:v3.28.5": failed to resolve reference "docker.io/calico/cni:v3.28.5": docker.io/calico/cni:v3.28.5: not found`

func TestPermanentFailure(t *testing.T) {
	cases := []struct {
		name string
		c    ContainerReport
		want string // "" for none
	}{
		{"no platform in the index", ContainerReport{Name: "flexvol-driver", Init: true, Image: "docker.io/cnimatrix/flexvol:amd64-only", State: "waiting", Reason: "ErrImagePull", Message: noPlatformMsg},
			`will not recover by waiting: pod p on node arm: init container flexvol-driver (docker.io/cnimatrix/flexvol:amd64-only): ` + noPlatformMsg},
		{"kernel refused the binary (logs)", ContainerReport{Name: "flexvol-driver", Init: true, Image: "docker.io/cnimatrix/flexvol:mislabeled", State: "waiting", Reason: "CrashLoopBackOff", Restarts: 2, LastExitCode: 1, LastReason: "Error",
			Logs: "first line\nexec /usr/local/bin/flexvol: exec format error\n"},
			`will not recover by waiting: pod p on node arm: init container flexvol-driver (docker.io/cnimatrix/flexvol:mislabeled): exec /usr/local/bin/flexvol: exec format error`},
		{"kernel refused the binary (termination message)", ContainerReport{Name: "node", State: "terminated", ExitCode: 1, Message: "exec /bin/calico-node: exec format error"},
			`will not recover by waiting: pod p on node arm: container node: exec /bin/calico-node: exec format error`},
		{"pull error without the registry's answer: retried", ContainerReport{Name: "x", State: "waiting", Reason: "ImagePullBackOff", Message: pullMsg}, ""},
		{"the registry has no such image", ContainerReport{Name: "upgrade-ipam", Init: true, Image: "docker.io/calico/cni:v3.28.5", State: "waiting", Reason: "ErrImagePull", Message: notFoundMsg},
			`will not recover by waiting: pod p on node arm: init container upgrade-ipam (docker.io/calico/cni:v3.28.5): ` + notFoundMsg},
		{"registry unreachable: retried", ContainerReport{Name: "x", State: "waiting", Reason: "ErrImagePull", Message: `rpc error: code = Unknown desc = failed to pull and unpack image "docker.io/calico/cni:v3.28.5": failed to resolve reference: dial tcp: i/o timeout`}, ""},
		{"an ordinary crash", ContainerReport{Name: "x", State: "waiting", Reason: "CrashLoopBackOff", Restarts: 3, LastExitCode: 2, Logs: "panic: boom"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pe := PermanentFailure(PodReport{Name: "p", Node: "arm", Containers: []ContainerReport{c.c}})
			switch {
			case c.want == "" && pe != nil:
				t.Errorf("permanent: %v", pe)
			case c.want != "" && (pe == nil || pe.Error() != c.want):
				t.Errorf("got %v\nwant %s", pe, c.want)
			}
		})
	}
}

// seedFixture is a DaemonSet on two nodes whose init container works on one
// and not on the other, the shape of the seed on a mixed cluster.
func seedFixture(bad corev1.ContainerStatus) *fake.Clientset {
	labels := map[string]string{"app": "flannel"}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-flannel-ds", Namespace: "kube-flannel", Generation: 1, UID: "ds-uid"},
		Spec:       appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}},
		Status:     appsv1.DaemonSetStatus{ObservedGeneration: 1, DesiredNumberScheduled: 2, UpdatedNumberScheduled: 2, NumberReady: 1},
	}
	ok := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-flannel-ds-amd", Namespace: "kube-flannel", Labels: labels, UID: "uid-amd"},
		Spec:       corev1.PodSpec{NodeName: "cp"},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
	stuck := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-flannel-ds-arm", Namespace: "kube-flannel", Labels: labels, UID: types.UID("uid-arm")},
		Spec:       corev1.PodSpec{NodeName: "arm-1"},
		Status: corev1.PodStatus{
			Phase:                 corev1.PodPending,
			Conditions:            []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}},
			InitContainerStatuses: []corev1.ContainerStatus{bad},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "kube-flannel", Image: "docker.io/cnimatrix/flannel:v0.28.10",
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}}},
		},
	}
	return fake.NewClientset(ds, ok, stuck)
}

func waitSeed(t *testing.T, cs *fake.Clientset) (*NotReadyError, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	t0 := time.Now()
	err := WaitWorkloads(ctx, cs, []Workload{{Kind: "DaemonSet", Namespace: "kube-flannel", Name: "kube-flannel-ds"}}, nil)
	var nre *NotReadyError
	if !errors.As(err, &nre) {
		t.Fatalf("error %T %v, want *NotReadyError", err, err)
	}
	return nre, time.Since(t0)
}

// A pod whose init container the kernel refused: the wait stops at once
// instead of sitting out its deadline, and the report carries the runtime's
// words, the container, its image and its logs.
func TestWaitWorkloadsGivesUpOnExecFormatError(t *testing.T) {
	cs := seedFixture(corev1.ContainerStatus{
		Name: "flexvol-driver", Image: "docker.io/cnimatrix/flexvol:mislabeled", RestartCount: 3,
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 40s restarting failed container=flexvol-driver"}},
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			Reason: "Error", ExitCode: 1, Message: "exec /usr/local/bin/flexvol: exec format error"}},
	})
	nre, took := waitSeed(t, cs)
	if took > 3*time.Second {
		t.Errorf("gave up after %s, want at once", took)
	}
	var pe *PermanentError
	if !errors.As(nre, &pe) || errors.Is(nre, context.DeadlineExceeded) {
		t.Fatalf("Err %T %v, want a *PermanentError", nre.Err, nre.Err)
	}
	if pe.Pod != "kube-flannel-ds-arm" || pe.Node != "arm-1" || pe.Container != "init container flexvol-driver" ||
		pe.Image != "docker.io/cnimatrix/flexvol:mislabeled" || pe.Why != "exec /usr/local/bin/flexvol: exec format error" {
		t.Errorf("permanent error %+v", pe)
	}
	msg := nre.Error()
	t.Logf("error string:\n%s", msg)
	for _, want := range []string{
		"daemonset kube-flannel/kube-flannel-ds: 1/2 ready; pod kube-flannel-ds-arm on node arm-1 (Pending): init container flexvol-driver (docker.io/cnimatrix/flexvol:mislabeled) waiting CrashLoopBackOff",
		"3 restarts, last exit 1 Error: exec /usr/local/bin/flexvol: exec format error",
		// The fake API server answers every log request with this.
		", logs: fake logs",
		"(gave up after ",
		": will not recover by waiting: pod kube-flannel-ds-arm on node arm-1: init container flexvol-driver (docker.io/cnimatrix/flexvol:mislabeled): exec /usr/local/bin/flexvol: exec format error)",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error string lacks %q", want)
		}
	}
	if strings.Contains(msg, "kube-flannel-ds-amd") {
		t.Error("the ready pod is in the report")
	}
	// The logs asked for are those of the instance that failed: the
	// previous one of the init container, and only a few lines.
	var logReqs []*corev1.PodLogOptions
	for _, a := range cs.Actions() {
		if a.GetSubresource() == "log" {
			if g, ok := a.(k8stesting.GenericAction); ok {
				if o, ok := g.GetValue().(*corev1.PodLogOptions); ok {
					logReqs = append(logReqs, o)
				}
			}
		}
	}
	if len(logReqs) == 0 {
		t.Fatal("no log was read")
	}
	for _, o := range logReqs {
		if o.Container != "flexvol-driver" || !o.Previous || o.TailLines == nil || *o.TailLines != logTailLines {
			t.Errorf("log request %+v", o)
		}
	}
	// Terminated instances do not change: the poll and the final report
	// read them once between them.
	if len(logReqs) != 1 {
		t.Errorf("%d log requests, want 1 (cached)", len(logReqs))
	}
}

func TestWaitWorkloadsGivesUpOnNoMatchForPlatform(t *testing.T) {
	cs := seedFixture(corev1.ContainerStatus{
		Name: "flexvol-driver", Image: "docker.io/cnimatrix/flexvol:amd64-only",
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: noPlatformMsg}},
	})
	nre, took := waitSeed(t, cs)
	if took > 3*time.Second {
		t.Errorf("gave up after %s, want at once", took)
	}
	var pe *PermanentError
	if !errors.As(nre, &pe) || pe.Why != noPlatformMsg {
		t.Fatalf("Err %v, want a *PermanentError quoting containerd", nre.Err)
	}
	if !strings.Contains(nre.Error(), "init container flexvol-driver (docker.io/cnimatrix/flexvol:amd64-only) waiting ErrImagePull: "+noPlatformMsg) {
		t.Errorf("error string %s", nre)
	}
}
