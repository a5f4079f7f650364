package checks

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cnimatrix/cnimatrix/internal/install"
)

// CalicoKubeControllersReady waits until the calico-kube-controllers
// Deployment is available. It runs the controllers that garbage-collect IPAM
// blocks and node resources; without it a cluster works until nodes or pods
// churn, which a short test would not see.
type CalicoKubeControllersReady struct {
	// Namespace overrides where it is looked for (as CalicoNodeReady).
	Namespace string
}

func (CalicoKubeControllersReady) Name() string { return NameCalicoKubeControllersReady }

func (c CalicoKubeControllersReady) Run(ctx context.Context, env *Env) Result {
	env.init()
	ctx, cancel := context.WithTimeout(ctx, env.Timeout)
	defer cancel()
	t0 := time.Now()
	var ns, state string
	// The Deployment is created with the rest of the install, but an
	// operator install creates it only once the operator has reconciled.
	err := poll(ctx, func(ctx context.Context) (bool, error) {
		var seen []string
		for _, cand := range calicoNamespaces(env, c.Namespace) {
			_, err := env.Client.AppsV1().Deployments(cand).Get(ctx, calicoKubeControllers, metav1.GetOptions{})
			switch {
			case err == nil:
				ns = cand
				return true, nil
			case apierrors.IsNotFound(err):
				seen = append(seen, cand)
			default:
				state = fmt.Sprintf("get deployment %s/%s: %v", cand, calicoKubeControllers, err)
				return false, nil
			}
		}
		state = "no deployment " + calicoKubeControllers + " in " + strings.Join(seen, ", ")
		return false, nil
	})
	if err != nil {
		return fail(nil, "%s after %s: %v", state, time.Since(t0).Round(time.Second), err)
	}
	w := install.Workload{Kind: "Deployment", Namespace: ns, Name: calicoKubeControllers}
	waitErr := install.WaitWorkloads(ctx, env.Client, []install.Workload{w}, env.Log)
	ready := time.Since(t0)

	ectx, ecancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer ecancel()
	var ev []Evidence
	if d, err := env.Client.AppsV1().Deployments(ns).Get(ectx, calicoKubeControllers, metav1.GetOptions{}); err == nil {
		e := Evidence{Check: c.Name(), Source: "api", Target: w.String(), OK: waitErr == nil, Detail: describeDeployment(d)}
		if e.OK {
			e.Latency = ready
		}
		ev = append(ev, e)
		if pods, err := env.Client.CoreV1().Pods(ns).List(ectx, metav1.ListOptions{LabelSelector: "k8s-app=" + calicoKubeControllers}); err == nil {
			sortPods(pods.Items)
			for i := range pods.Items {
				p := &pods.Items[i]
				e := Evidence{Check: c.Name(), Source: "api", Target: fmt.Sprintf("pod %s/%s@%s", ns, p.Name, p.Spec.NodeName), OK: install.PodReady(p)}
				if e.OK {
					e.Detail = describeReadyPod(p)
				} else {
					e.Detail = install.DescribePod(p, nil).String()
				}
				// A pod of an older ReplicaSet still terminating is not a
				// failure once the Deployment is available.
				e.OK = e.OK || (waitErr == nil && p.DeletionTimestamp != nil)
				ev = append(ev, e)
			}
		}
	}
	if waitErr != nil {
		return fail(ev, "%v", waitErr)
	}
	return Result{OK: true, Evidence: ev}
}

// describeDeployment is its replica counts, conditions and image.
func describeDeployment(d *appsv1.Deployment) string {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := fmt.Sprintf("%d/%d available, %d updated", d.Status.AvailableReplicas, want, d.Status.UpdatedReplicas)
	for _, cond := range d.Status.Conditions {
		if cond.Type == appsv1.DeploymentAvailable || cond.Status != corev1.ConditionTrue {
			s += fmt.Sprintf(", %s=%s", cond.Type, cond.Status)
			if cond.Status != corev1.ConditionTrue && cond.Message != "" {
				s += " (" + cond.Message + ")"
			}
		}
	}
	for _, ctr := range d.Spec.Template.Spec.Containers {
		s += ", " + ctr.Name + "=" + ctr.Image
	}
	return s
}
