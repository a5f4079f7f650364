package checks

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
	"github.com/cnimatrix/cnimatrix/internal/install"
)

// poll runs cond with backoff until it returns true or an error, or ctx ends.
// Quick at first, because most things settle within seconds, then every 5 s.
func poll(ctx context.Context, cond wait.ConditionWithContextFunc) error {
	b := wait.Backoff{Duration: 250 * time.Millisecond, Factor: 1.6, Jitter: 0.1, Steps: 12, Cap: 5 * time.Second}
	return b.DelayFunc().Until(ctx, true, true, cond)
}

// Setup creates the test namespace and waits for its default ServiceAccount,
// without which the API server rejects pods. A namespace left by an earlier
// run is deleted and waited out first.
func Setup(ctx context.Context, env *Env) error {
	env.init()
	ctx, cancel := context.WithTimeout(ctx, env.Timeout)
	defer cancel()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: env.Namespace, Labels: map[string]string{cluster.Label: "checks"}}}
	if env.Owner != "" {
		ns.Annotations = map[string]string{cluster.OwnerAnnotation: env.Owner}
	}
	var state string
	err := poll(ctx, func(ctx context.Context) (bool, error) {
		if cur, err := env.Client.CoreV1().Namespaces().Get(ctx, env.Namespace, metav1.GetOptions{}); err == nil &&
			cur.Labels[cluster.Label] == ProvidedNamespace && cur.DeletionTimestamp == nil {
			// The user's, for rights only inside it: use it, after
			// removing what an earlier run (--keep) left in it.
			env.provided = true
			if err := deleteOwned(ctx, env); err != nil {
				state = err.Error()
				return false, nil
			}
			env.created = true
			return true, nil
		}
		_, err := env.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
		switch {
		case err == nil:
			env.created = true
			return true, nil
		case apierrors.IsForbidden(err):
			return false, fmt.Errorf("%w: give the kubeconfig the right to create namespaces, or make namespace %s yourself with the label %s=%s and a RoleBinding in it (docs/existing-cluster.md)", err, env.Namespace, cluster.Label, ProvidedNamespace)
		case apierrors.IsAlreadyExists(err):
			cur, gerr := env.Client.CoreV1().Namespaces().Get(ctx, env.Namespace, metav1.GetOptions{})
			if gerr != nil {
				state = gerr.Error()
				return false, nil
			}
			if cur.DeletionTimestamp != nil {
				state = "namespace from an earlier run still terminating"
				return false, nil
			}
			switch cur.Labels[cluster.Label] {
			case ProvidedNamespace:
				return false, nil // just labelled: the next poll uses it
			case "checks":
			default:
				return false, fmt.Errorf("namespace %s exists and is not cnimatrix's (no label %s=checks or =%s): cnimatrix neither uses nor deletes it", env.Namespace, cluster.Label, ProvidedNamespace)
			}
			// Left by a run with KeepNamespace: start from a clean slate,
			// since Workloads creates fixed names.
			if err := env.Client.CoreV1().Namespaces().Delete(ctx, env.Namespace, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				state = "delete leftover namespace: " + err.Error()
				return false, nil
			}
			state = "deleting namespace left by an earlier run"
			return false, nil
		default:
			state = err.Error()
			return false, nil
		}
	})
	if err != nil {
		return fmt.Errorf("create namespace %s (%s): %w", env.Namespace, state, err)
	}
	err = poll(ctx, func(ctx context.Context) (bool, error) {
		_, err := env.Client.CoreV1().ServiceAccounts(env.Namespace).Get(ctx, "default", metav1.GetOptions{})
		if err != nil {
			state = err.Error()
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("namespace %s: default service account (%s): %w", env.Namespace, state, err)
	}
	return nil
}

// Teardown deletes the test namespace and waits until it is gone, so the
// next run can create it again. Pods use a 1 s grace period, so this takes
// seconds unless the CNI cannot tear down sandboxes.
func Teardown(ctx context.Context, env *Env) error {
	env.init()
	if env.provided {
		if err := deleteOwned(ctx, env); err != nil {
			return err
		}
		env.created = false
		return nil
	}
	bg := metav1.DeletePropagationBackground
	err := env.Client.CoreV1().Namespaces().Delete(ctx, env.Namespace, metav1.DeleteOptions{PropagationPolicy: &bg})
	if apierrors.IsNotFound(err) {
		env.created = false
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete namespace %s: %w", env.Namespace, err)
	}
	err = poll(ctx, func(ctx context.Context) (bool, error) {
		_, err := env.Client.CoreV1().Namespaces().Get(ctx, env.Namespace, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		return fmt.Errorf("namespace %s still terminating: %w", env.Namespace, err)
	}
	env.created = false
	return nil
}

// waitPods waits until every named pod is Ready and returns how long each
// took since t0. The pods start together, so one poll over all of them waits as long
// as the slowest; on timeout the error describes each pod that is not Ready,
// with its Warning events.
func waitPods(ctx context.Context, env *Env, names []string, t0 time.Time) (map[string]time.Duration, error) {
	readyAt := map[string]time.Duration{}
	pods := map[string]*corev1.Pod{}
	getErr := map[string]string{}
	err := poll(ctx, func(ctx context.Context) (bool, error) {
		for _, name := range names {
			if _, done := readyAt[name]; done {
				continue
			}
			p, err := env.Client.CoreV1().Pods(env.Namespace).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				getErr[name] = err.Error()
				continue
			}
			delete(getErr, name)
			pods[name] = p
			if install.PodReady(p) {
				readyAt[name] = time.Since(t0)
			}
		}
		return len(readyAt) == len(names), nil
	})
	if err == nil {
		return readyAt, nil
	}
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	events, _ := install.WarningEvents(ectx, env.Client, env.Namespace)
	var bad []string
	for _, name := range names {
		if _, done := readyAt[name]; done {
			continue
		}
		p := pods[name]
		if p == nil {
			bad = append(bad, fmt.Sprintf("pod %s/%s: %s", env.Namespace, name, getErr[name]))
			continue
		}
		bad = append(bad, install.DescribePod(p, events.For("Pod", p.Name, string(p.UID))).String())
	}
	return readyAt, fmt.Errorf("%s (not ready: %w)", strings.Join(bad, "; "), err)
}

// ProvidedNamespace is the value of the label cluster.Label on a checks
// namespace the user made for cnimatrix (with a RoleBinding in it, so that
// cnimatrix needs no right to create or delete namespaces): cnimatrix uses
// it and deletes only what it made in it.
const ProvidedNamespace = "provided"

// owned adds the label that marks what the checks create to labels.
func owned(labels map[string]string) map[string]string {
	out := map[string]string{cluster.Label: "checks"}
	for k, v := range labels {
		out[k] = v
	}
	return out
}

// deleteOwned deletes what the checks create (labelled by owned) in the
// checks namespace and waits until their pods are gone.
func deleteOwned(ctx context.Context, env *Env) error {
	ns, sel := env.Namespace, cluster.Label+"=checks"
	bg := metav1.DeletePropagationBackground
	del := metav1.DeleteOptions{PropagationPolicy: &bg}
	list := metav1.ListOptions{LabelSelector: sel}
	var errs []error
	errs = append(errs, env.Client.AppsV1().Deployments(ns).DeleteCollection(ctx, del, list))
	errs = append(errs, env.Client.CoreV1().Pods(ns).DeleteCollection(ctx, del, list))
	errs = append(errs, env.Client.NetworkingV1().NetworkPolicies(ns).DeleteCollection(ctx, del, list))
	svcs, err := env.Client.CoreV1().Services(ns).List(ctx, list)
	errs = append(errs, err)
	if err == nil {
		for _, s := range svcs.Items {
			if err := env.Client.CoreV1().Services(ns).Delete(ctx, s.Name, del); !apierrors.IsNotFound(err) {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("delete what the checks made in namespace %s: %w", ns, err)
	}
	// The nginx pods carry the Deployment's labels, not the owner label.
	pods := metav1.ListOptions{LabelSelector: appLabel + " in (" + nginxApp + "," + probeApp + ")"}
	err = poll(ctx, func(ctx context.Context) (bool, error) {
		l, err := env.Client.CoreV1().Pods(ns).List(ctx, pods)
		return err == nil && len(l.Items) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("pods of the checks in namespace %s still there: %w", ns, err)
	}
	return nil
}
