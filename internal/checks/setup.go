package checks

import (
	"context"
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
	var state string
	err := poll(ctx, func(ctx context.Context) (bool, error) {
		_, err := env.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
		switch {
		case err == nil:
			env.created = true
			return true, nil
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
