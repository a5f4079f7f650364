package install

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/cnimatrix/cnimatrix/internal/logx"
)

// Workload names a DaemonSet or Deployment to wait for.
type Workload struct {
	Kind      string // "DaemonSet" | "Deployment"
	Namespace string
	Name      string
}

func (w Workload) String() string {
	return strings.ToLower(w.Kind) + " " + w.Namespace + "/" + w.Name
}

// Workloads returns the DaemonSets and Deployments among objs, in order.
func Workloads(objs []*unstructured.Unstructured) []Workload {
	var out []Workload
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		if gvk.Group != "apps" || (gvk.Kind != "DaemonSet" && gvk.Kind != "Deployment") {
			continue
		}
		ns := o.GetNamespace()
		if ns == "" {
			ns = "default"
		}
		out = append(out, Workload{Kind: gvk.Kind, Namespace: ns, Name: o.GetName()})
	}
	return out
}

// WaitReady waits until every DaemonSet and Deployment among objs is ready
// (see WaitWorkloads), until ctx ends. It takes Apply's options so a caller
// can pass the same value to both; only Log is used.
func WaitReady(ctx context.Context, cfg *rest.Config, objs []*unstructured.Unstructured, opts ApplyOptions) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	return WaitWorkloads(ctx, cs, Workloads(objs), opts.Log)
}

// WaitWorkloads waits until each workload is ready: a DaemonSet when it is
// scheduled somewhere and all its scheduled pods are updated and ready, a
// Deployment when all its replicas are updated and available. When ctx ends
// first it returns a *NotReadyError describing the workloads that were not
// ready and why their pods were not. It gives up early, with a
// *PermanentError as the NotReadyError's Err, when a pod of a workload that
// is not ready failed in a way waiting cannot cure (see PermanentFailure).
func WaitWorkloads(ctx context.Context, client kubernetes.Interface, ws []Workload, log *logx.Logger) error {
	if log == nil {
		log = logx.Discard()
	}
	if len(ws) == 0 {
		return nil
	}
	t0 := time.Now()
	status := make([]WorkloadReport, len(ws))
	lastLog := ""
	logs := logCache{}
	err := Poll(ctx, func(ctx context.Context) (bool, error) {
		all := true
		var summary []string
		for i, w := range ws {
			status[i] = workloadStatus(ctx, client, w, status[i])
			if !status[i].OK {
				all = false
				summary = append(summary, fmt.Sprintf("%s %d/%d", w, status[i].Ready, status[i].Desired))
			}
		}
		for i, w := range ws {
			if status[i].OK {
				continue
			}
			if pe := logs.permanent(ctx, client, status[i]); pe != nil {
				log.Infof("%s: giving up: %v", w, pe)
				return false, pe
			}
		}
		if s := strings.Join(summary, ", "); s != lastLog && s != "" {
			log.Debugf("waiting: %s", s)
			lastLog = s
		}
		return all, nil
	})
	if err == nil {
		log.Debugf("%d workloads ready after %s", len(ws), time.Since(t0).Truncate(time.Millisecond))
		return nil
	}
	// ctx is over; collecting the evidence needs a context of its own.
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	nre := &NotReadyError{Err: err, Waited: time.Since(t0)}
	for _, st := range status {
		if st.OK {
			continue
		}
		nre.Workloads = append(nre.Workloads, collectEvidence(ectx, client, st, logs))
	}
	return nre
}

// workloadStatus reads one workload's readiness. API errors become its
// Problem, so that the wait keeps polling through a restarting API server, and
// keep what prev (the last reading) knew: an API server that went away at the
// end must not erase the evidence gathered before.
func workloadStatus(ctx context.Context, client kubernetes.Interface, w Workload, prev WorkloadReport) WorkloadReport {
	r := WorkloadReport{Workload: w}
	var err error
	switch w.Kind {
	case "DaemonSet":
		var ds *appsv1.DaemonSet
		ds, err = client.AppsV1().DaemonSets(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err == nil {
			r.OK, r.Ready, r.Desired, r.Problem = DaemonSetReady(ds)
			r.selector = ds.Spec.Selector
			r.uid = string(ds.UID)
		}
		if err == nil && r.OK {
			var want int
			if want, err = daemonSetNodes(ctx, client, ds); err == nil && int(r.Desired) < want {
				r.OK = false
				r.Problem = fmt.Sprintf("scheduled on %d of the %d nodes it selects (the controller has not caught up with a node yet)", r.Desired, want)
			}
		}
	case "Deployment":
		var d *appsv1.Deployment
		d, err = client.AppsV1().Deployments(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err == nil {
			r.OK, r.Ready, r.Desired, r.Problem = DeploymentReady(d)
			r.selector = d.Spec.Selector
			r.uid = string(d.UID)
		}
	default:
		r.Problem = "unsupported kind " + w.Kind
	}
	switch {
	case err == nil:
	case apierrors.IsNotFound(err):
		r.Problem = "not found"
	default:
		if prev.Workload == w {
			r = prev
			r.OK = false
		}
		r.Problem = "get: " + err.Error()
	}
	return r
}

// DaemonSetReady reports whether ds is ready, its ready and desired pod
// counts and, when not ready, what is missing beyond "not all pods ready".
func DaemonSetReady(ds *appsv1.DaemonSet) (ok bool, ready, desired int32, problem string) {
	st := ds.Status
	ready, desired = st.NumberReady, st.DesiredNumberScheduled
	switch {
	case st.ObservedGeneration < ds.Generation:
		return false, ready, desired, fmt.Sprintf("controller has not observed generation %d yet", ds.Generation)
	case desired == 0:
		return false, ready, desired, "no node runs it (desiredNumberScheduled=0: check nodeSelector, tolerations, node taints)"
	case st.UpdatedNumberScheduled < desired:
		return false, ready, desired, fmt.Sprintf("%d/%d pods updated", st.UpdatedNumberScheduled, desired)
	case ready < desired:
		return false, ready, desired, ""
	}
	return true, ready, desired, ""
}

// DeploymentReady reports whether d is ready, its available and wanted
// replica counts and, when not ready, the failing condition if any.
func DeploymentReady(d *appsv1.Deployment) (ok bool, available, replicas int32, problem string) {
	replicas = 1
	if d.Spec.Replicas != nil {
		replicas = *d.Spec.Replicas
	}
	st := d.Status
	available = st.AvailableReplicas
	var conds []string
	for _, c := range st.Conditions {
		switch {
		case c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue,
			c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse:
			conds = append(conds, fmt.Sprintf("%s: %s", c.Reason, c.Message))
		}
	}
	problem = strings.Join(conds, "; ")
	switch {
	case st.ObservedGeneration < d.Generation:
		return false, available, replicas, join("controller has not observed generation "+fmt.Sprint(d.Generation)+" yet", problem)
	case st.UpdatedReplicas < replicas:
		return false, available, replicas, join(fmt.Sprintf("%d/%d replicas updated", st.UpdatedReplicas, replicas), problem)
	case available < replicas:
		return false, available, replicas, problem
	}
	return true, available, replicas, ""
}

func join(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}

// PodReady reports whether the pod's Ready condition is True.
func PodReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// collectEvidence lists the workload's pods and the Warning events of those
// pods and of the workload itself. Failing to collect is recorded, not fatal:
// the wait already failed and the error must still say so.
func collectEvidence(ctx context.Context, client kubernetes.Interface, r WorkloadReport, logs logCache) WorkloadReport {
	if r.selector == nil {
		return r
	}
	sel, err := metav1.LabelSelectorAsSelector(r.selector)
	if err != nil {
		r.Problem = join(r.Problem, "bad selector: "+err.Error())
		return r
	}
	pods, err := client.CoreV1().Pods(r.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		r.Problem = join(r.Problem, "list pods: "+err.Error())
		return r
	}
	events, err := WarningEvents(ctx, client, r.Namespace)
	if err != nil {
		r.Problem = join(r.Problem, "list events: "+err.Error())
	}
	r.Events = events.For(r.Kind, r.Name, r.uid)
	for i := range pods.Items {
		p := &pods.Items[i]
		if !sel.Matches(labels.Set(p.Labels)) {
			continue
		}
		if PodReady(p) && p.DeletionTimestamp == nil {
			continue
		}
		rep := DescribePod(p, events.For("Pod", p.Name, string(p.UID)))
		logs.addLogs(ctx, client, r.Namespace, string(p.UID), &rep)
		r.Pods = append(r.Pods, rep)
	}
	return r
}
