package checks

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/cnimatrix/cnimatrix/internal/install"
)

// CNIPodsReady waits until the CNI's DaemonSets and Deployments (those in
// env.CNINamespace whose pods match env.CNISelector) are ready and every
// matching pod is Ready. It does not depend on NodesReady: nodes are
// NotReady exactly when the CNI is not, and this check's evidence says why.
type CNIPodsReady struct{}

func (CNIPodsReady) Name() string { return NameCNIPodsReady }

func (c CNIPodsReady) Run(ctx context.Context, env *Env) Result {
	env.init()
	if env.CNINamespace == "" {
		return fail(nil, "env.CNINamespace is not set")
	}
	sel, err := labels.Parse(env.CNISelector)
	if err != nil {
		return fail(nil, "CNI selector %q: %v", env.CNISelector, err)
	}
	ctx, cancel := context.WithTimeout(ctx, env.Timeout)
	defer cancel()
	t0 := time.Now()

	ws, err := cniWorkloads(ctx, env, sel)
	if err != nil {
		return fail(nil, "%v", err)
	}
	var waitErr error
	if len(ws) > 0 {
		waitErr = install.WaitWorkloads(ctx, env.Client, ws, env.Log)
	}
	// The workloads being ready says nothing about pods no workload owns
	// (static pods, or no workload matched): wait for the pods themselves.
	var pods []corev1.Pod
	polls := 0
	listPods := func(ctx context.Context) (bool, error) {
		polls++
		list, err := env.Client.CoreV1().Pods(env.CNINamespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err != nil {
			return false, nil
		}
		pods = list.Items
		if len(pods) == 0 {
			return false, nil
		}
		for i := range pods {
			if !install.PodReady(&pods[i]) {
				return false, nil
			}
		}
		return true, nil
	}
	// Evidence is collected after the wait, whose context may be over.
	ectx, ecancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer ecancel()
	var podErr error
	if waitErr == nil {
		podErr = poll(ctx, listPods)
	} else {
		_, _ = listPods(ectx)
	}
	events, _ := install.WarningEvents(ectx, env.Client, env.CNINamespace)
	sort.Slice(pods, func(i, j int) bool { return pods[i].Spec.NodeName+pods[i].Name < pods[j].Spec.NodeName+pods[j].Name })
	var ev []Evidence
	for i := range pods {
		p := &pods[i]
		e := Evidence{Check: c.Name(), Source: "api", Target: fmt.Sprintf("pod %s/%s@%s", p.Namespace, p.Name, p.Spec.NodeName), OK: install.PodReady(p)}
		if e.OK {
			e.Detail = describeReadyPod(p)
		} else {
			e.Detail = install.DescribePod(p, events.For("Pod", p.Name, string(p.UID))).String()
		}
		ev = append(ev, e)
	}
	switch {
	case waitErr != nil:
		return fail(ev, "%v", waitErr)
	case podErr != nil && len(pods) == 0:
		return fail(ev, "no pods match %q in namespace %s after %s", env.CNISelector, env.CNINamespace, time.Since(t0).Round(time.Second))
	case podErr != nil:
		return summarize(ev)
	}
	return Result{OK: true, Evidence: ev}
}

// cniWorkloads are the DaemonSets and Deployments of the CNI namespace whose
// pod template matches the selector.
func cniWorkloads(ctx context.Context, env *Env, sel labels.Selector) ([]install.Workload, error) {
	var out []install.Workload
	var errs []error
	dss, err := env.Client.AppsV1().DaemonSets(env.CNINamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		errs = append(errs, err)
	} else {
		for _, d := range dss.Items {
			if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				out = append(out, install.Workload{Kind: "DaemonSet", Namespace: d.Namespace, Name: d.Name})
			}
		}
	}
	deps, err := env.Client.AppsV1().Deployments(env.CNINamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		errs = append(errs, err)
	} else {
		for _, d := range deps.Items {
			if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				out = append(out, install.Workload{Kind: "Deployment", Namespace: d.Namespace, Name: d.Name})
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("list CNI workloads in %s: %w", env.CNINamespace, err)
	}
	return out, nil
}

// describeReadyPod names the images and restarts of a ready pod: restarts
// before becoming ready are worth seeing even when the check passes.
func describeReadyPod(p *corev1.Pod) string {
	s := "Ready"
	restarts := int32(0)
	for _, cs := range p.Status.ContainerStatuses {
		restarts += cs.RestartCount
	}
	if restarts > 0 {
		s += fmt.Sprintf(", %d restarts", restarts)
	}
	for _, c := range p.Spec.Containers {
		s += ", " + c.Name + "=" + c.Image
	}
	return s
}
