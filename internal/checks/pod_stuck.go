package checks

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cnimatrix/cnimatrix/internal/install"
)

// NoPodStuckCreating fails when some pod of the cluster, in any namespace,
// has been on its node without its sandbox or containers for longer than
// Threshold: kubectl's "ContainerCreating". That is how a CNI that fails
// only for some pods shows (the kubelet retries CNI ADD forever and each
// failure is a FailedCreatePodSandBox event), while the CNI's own pods and
// the test workloads look healthy.
type NoPodStuckCreating struct {
	// Threshold is how long a pod may be creating; default 2m, longer than
	// an image pull of the harness's images takes on a slow node.
	Threshold time.Duration
	now       func() time.Time // tests
}

func (NoPodStuckCreating) Name() string { return NameNoPodStuckCreating }

const defaultStuckThreshold = 2 * time.Minute

// creatingReasons are the waiting reasons of a container whose pod is still
// being set up: ContainerCreating for app containers, PodInitializing for
// them behind init containers that have not run.
var creatingReasons = map[string]bool{"ContainerCreating": true, "PodInitializing": true}

func (c NoPodStuckCreating) Run(ctx context.Context, env *Env) Result {
	env.init()
	threshold := c.Threshold
	if threshold <= 0 {
		threshold = defaultStuckThreshold
	}
	now := time.Now
	if c.now != nil {
		now = c.now
	}
	ctx, cancel := context.WithTimeout(ctx, min(env.Timeout, time.Minute))
	defer cancel()
	var list *corev1.PodList
	polls := 0
	var listErr error
	// Retried only for the API server's hiccups, not for pods to settle:
	// the threshold already is the patience.
	err := poll(ctx, func(ctx context.Context) (bool, error) {
		polls++
		list, listErr = env.Client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
		return listErr == nil, nil
	})
	if err != nil {
		return fail(nil, "list pods: %v (%v)", listErr, err)
	}
	at := now()
	stuck, young := stuckCreating(list.Items, at, threshold)
	events := map[string]install.EventIndex{}
	var ev []Evidence
	for _, s := range stuck {
		p := s.pod
		idx, ok := events[p.Namespace]
		if !ok {
			idx, _ = install.WarningEvents(ctx, env.Client, p.Namespace)
			events[p.Namespace] = idx
		}
		detail := fmt.Sprintf("creating for %s (threshold %s)", s.age.Round(time.Second), threshold)
		if evs := idx.For("Pod", p.Name, string(p.UID)); len(evs) > 0 {
			last := evs[len(evs)-1]
			detail += "; latest " + last.String()
		} else {
			detail += "; no warning event; " + install.DescribePod(p, nil).String()
		}
		ev = append(ev, Evidence{Check: c.Name(), Source: "api", Target: fmt.Sprintf("pod %s/%s@%s", p.Namespace, p.Name, p.Spec.NodeName), Detail: detail, Attempts: polls})
	}
	for _, s := range young {
		ev = append(ev, Evidence{Check: c.Name(), Source: "api", Target: fmt.Sprintf("pod %s/%s@%s", s.pod.Namespace, s.pod.Name, s.pod.Spec.NodeName), OK: true,
			Detail: fmt.Sprintf("creating for %s, under the threshold %s", s.age.Round(time.Second), threshold)})
	}
	if len(stuck) == 0 {
		ev = append(ev, Evidence{Check: c.Name(), Source: "api", Target: "all namespaces", OK: true, Attempts: polls,
			Detail: fmt.Sprintf("%d pods, none creating for longer than %s", len(list.Items), threshold)})
		return Result{OK: true, Evidence: ev}
	}
	var msgs []string
	for _, e := range ev[:len(stuck)] {
		msgs = append(msgs, e.Target+": "+e.Detail)
	}
	return fail(ev, "%d pods stuck creating: %s", len(stuck), strings.Join(msgs, "; "))
}

type creatingPod struct {
	pod *corev1.Pod
	age time.Duration // since it was scheduled
}

// stuckCreating splits the pods still being created into those over the
// threshold and those under it, each sorted oldest first.
func stuckCreating(pods []corev1.Pod, now time.Time, threshold time.Duration) (stuck, young []creatingPod) {
	for i := range pods {
		p := &pods[i]
		if !podCreating(p) {
			continue
		}
		cp := creatingPod{pod: p, age: now.Sub(scheduledAt(p))}
		if cp.age > threshold {
			stuck = append(stuck, cp)
		} else {
			young = append(young, cp)
		}
	}
	oldest := func(s []creatingPod) {
		sort.Slice(s, func(i, j int) bool { return s[i].age > s[j].age })
	}
	oldest(stuck)
	oldest(young)
	return stuck, young
}

// podCreating: bound to a node, Pending, not being deleted, and either
// without a sandbox (PodReadyToStartContainers False, on kubelets that
// report it) or with every container still waiting to be created. A pod
// with one container crash-looping or failing its image pull is failing in
// another way, which the waiting reason of that container says.
func podCreating(p *corev1.Pod) bool {
	if p.Spec.NodeName == "" || p.Status.Phase != corev1.PodPending || p.DeletionTimestamp != nil {
		return false
	}
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReadyToStartContainers && cond.Status == corev1.ConditionFalse {
			return true
		}
	}
	statuses := append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
	// Bound but no status yet: the kubelet has not set the pod up.
	for _, cs := range statuses {
		if w := cs.State.Waiting; w == nil || !creatingReasons[w.Reason] {
			return false
		}
	}
	return true
}

// scheduledAt is when the pod was bound to its node (creation time if the
// condition is missing): time spent unschedulable is not the CNI's.
func scheduledAt(p *corev1.Pod) time.Time {
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionTrue && !cond.LastTransitionTime.IsZero() {
			return cond.LastTransitionTime.Time
		}
	}
	return p.CreationTimestamp.Time
}
