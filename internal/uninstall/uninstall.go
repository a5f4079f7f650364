// Package uninstall removes a CNI from a cluster so that the cluster can take
// another one as if it were new: the opt-in speed mode of reused clusters.
// What "as if new" means is measured, not assumed: each node's state is read
// when the cluster is made (its baseline) and again after the uninstall, and
// anything a CNI left (files, links, routes, iptables chains and rules,
// nftables tables, ipsets, node annotations) is removed, then read once more:
// what is still there is an error, and the caller deletes the cluster.
package uninstall

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
	"github.com/cnimatrix/cnimatrix/internal/install"
)

// Baseline is a cluster's state before any CNI: per node, what
// Snapshot read and the node object's annotation and label keys.
type Baseline struct {
	Nodes       map[string]NodeState
	Annotations map[string]map[string]bool
	Labels      map[string]map[string]bool
}

// TakeBaseline reads every node of a cluster that has no CNI yet.
func TakeBaseline(ctx context.Context, client kubernetes.Interface, nodes []cluster.Node) (*Baseline, error) {
	b := &Baseline{Nodes: map[string]NodeState{}, Annotations: map[string]map[string]bool{}, Labels: map[string]map[string]bool{}}
	states, err := snapshotAll(ctx, nodes)
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	for _, s := range states {
		b.Nodes[s.Node] = s
	}
	list, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("baseline: list nodes: %w", err)
	}
	for _, n := range list.Items {
		b.Annotations[n.Name] = keys(n.Annotations)
		b.Labels[n.Name] = keys(n.Labels)
	}
	return b, nil
}

func keys(m map[string]string) map[string]bool {
	out := map[string]bool{}
	for k := range m {
		out[k] = true
	}
	return out
}

// Target is an installed CNI to remove.
type Target struct {
	Config *rest.Config
	Client kubernetes.Interface
	Nodes  []cluster.Node
	// Objects are what was applied (the CNI's manifests, after edits).
	Objects []*unstructured.Unstructured
	// Namespaces are the harness's own (the checks' workloads): deleted
	// first, while the CNI can still tear their pods' networks down.
	Namespaces []string
	// Operated are namespaces the CNI's operator made (calico-system):
	// deleted after the CNI's objects.
	Operated []string
	Baseline *Baseline
}

// Step is one part of an uninstall, for the record.
type Step struct {
	Name   string
	Target string
	Detail string
	OK     bool
}

// podGoneTimeout bounds the wait for pods to go before they are deleted
// with no grace period (a broken CNI may never finish tearing one down).
const podGoneTimeout = 90 * time.Second

// Run removes t's CNI. The steps, in order: delete the harness's
// namespaces and, at the same time, scale to zero the Deployments whose pods
// use the pod network (CoreDNS, ...), so that no pod keeps an address of the
// old CNI; delete the custom resources of the CNI's own CRDs (an operator's
// Installation) and wait until they are gone, then the CNI's other objects,
// then the namespaces its operator made; clean every node against its
// baseline and the node objects' annotations and labels; wait until the
// nodes are NotReady; scale the Deployments back. Their pods then wait for
// the next CNI, as on a new cluster. The steps go on past failures; the
// error joins them all.
func Run(ctx context.Context, t Target) ([]Step, error) {
	var steps []Step
	var errs []error
	record := func(name, target string, t0 time.Time, detail string, err error) {
		s := Step{Name: name, Target: target, OK: err == nil, Detail: detail}
		if err != nil {
			s.Detail = strings.TrimSpace(detail + " " + err.Error())
			errs = append(errs, fmt.Errorf("%s %s: %w", name, target, err))
		}
		if s.Detail == "" {
			s.Detail = "done"
		}
		s.Detail += fmt.Sprintf(" (%.1fs)", time.Since(t0).Seconds())
		steps = append(steps, s)
	}

	// The harness's namespaces and the pod-network Deployments go at once,
	// while the CNI can still tear their pods' networks down.
	var parked []parkedDeployment
	var parkErr error
	parkStart := time.Now()
	parkDone := make(chan struct{})
	go func() {
		defer close(parkDone)
		parked, parkErr = park(ctx, t.Client, t.Objects, append(slices.Clone(t.Namespaces), t.Operated...))
	}()
	deleteNamespaces(ctx, t.Client, t.Namespaces, record)
	<-parkDone
	var names []string
	for _, p := range parked {
		names = append(names, fmt.Sprintf("%s/%s (%d)", p.ns, p.name, p.replicas))
	}
	record("scale to zero", "pod-network deployments", parkStart, strings.Join(names, ", "), parkErr)

	// Custom resources first, while the operator that may hold finalizers
	// on them still runs; then everything else.
	custom, rest := splitCustom(t.Objects)
	if len(custom) > 0 {
		t0 := time.Now()
		err := deleteObjects(ctx, t.Config, custom)
		record("delete", "custom resources", t0, refs(custom), err)
	}
	// The CNI's own workloads on the pod network (calico-kube-controllers)
	// go while the CNI can still tear their pods' networks down: deleted
	// with calico-node and its RBAC, such a pod stays Terminating (the
	// CNI plugin's DEL fails) and its Deployment never goes.
	podNet, rest := splitPodNetwork(rest)
	if len(podNet) > 0 {
		t0 := time.Now()
		err := deleteObjects(ctx, t.Config, podNet)
		record("delete", "pod-network workloads", t0, refs(podNet), err)
	}
	t0 := time.Now()
	err := deleteObjects(ctx, t.Config, rest)
	record("delete", "CNI objects", t0, fmt.Sprintf("%d objects", len(rest)), err)
	deleteNamespaces(ctx, t.Client, t.Operated, record)

	for _, c := range cleanNodes(ctx, t.Nodes, t.Baseline) {
		var err error
		if c.err != nil {
			err = c.err
		} else if !c.left.Empty() {
			err = fmt.Errorf("left: %s", c.left)
		}
		detail := "removed: " + c.removed.String()
		if err == nil {
			detail += "; left: nothing"
		}
		record("clean node", c.node, c.start, detail, err)
	}

	t0 = time.Now()
	removed, err := cleanNodeObjects(ctx, t.Client, t.Baseline)
	record("clean node objects", "annotations and labels", t0, "removed: "+orNothing(removed), err)

	// On a new cluster the nodes are NotReady until a CNI is installed, so
	// the Deployments' pods wait, unscheduled, for the first node the CNI
	// makes Ready. They wait the same way here once the kubelets have seen
	// the CNI go; scaled back sooner, they would be placed on any node
	// (an emulated one, say) as they never are on a new cluster.
	t0 = time.Now()
	err = nodesNotReady(ctx, t.Client)
	record("wait", "nodes NotReady without a CNI", t0, "", err)

	t0 = time.Now()
	err = unpark(ctx, t.Client, parked)
	record("scale back", "pod-network deployments", t0, strings.Join(names, ", "), err)
	return steps, errors.Join(errs...)
}

// deleteNamespaces deletes each of names (deleteNamespace) as a step.
func deleteNamespaces(ctx context.Context, client kubernetes.Interface, names []string, record func(name, target string, t0 time.Time, detail string, err error)) {
	for _, ns := range names {
		t0 := time.Now()
		record("delete namespace", ns, t0, "", deleteNamespace(ctx, client, ns))
	}
}

func orNothing(xs []string) string {
	if len(xs) == 0 {
		return "nothing"
	}
	return strings.Join(xs, ", ")
}

// deleteNamespace deletes ns and waits until it is gone. Its pods are
// deleted first with a one-second grace period: the harness's workloads
// need no orderly shutdown, and the namespace would otherwise wait out
// their default 30 s. That is still a graceful delete: each pod is gone
// only once its node has torn its sandbox (and network) down.
func deleteNamespace(ctx context.Context, client kubernetes.Interface, ns string) error {
	one := int64(1)
	err := client.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &one}, metav1.ListOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete pods: %w", err)
	}
	err = client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	return poll(ctx, 3*time.Minute, func(ctx context.Context) (bool, error) {
		_, err := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, nil
	})
}

type parkedDeployment struct {
	ns, name string
	replicas int32
}

// park scales to zero every Deployment, not part of the CNI, whose pods are
// on the pod network, and waits until their pods are gone.
func park(ctx context.Context, client kubernetes.Interface, cni []*unstructured.Unstructured, harness []string) ([]parkedDeployment, error) {
	own := map[string]bool{}
	skipNS := map[string]bool{}
	for _, ns := range harness {
		skipNS[ns] = true
	}
	for _, o := range cni {
		own[o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName()] = true
	}
	list, err := client.AppsV1().Deployments("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list deployments: %w", err)
	}
	var parked []parkedDeployment
	var errs []error
	var waitFor []appsv1.Deployment
	for _, d := range list.Items {
		if own["Deployment/"+d.Namespace+"/"+d.Name] || skipNS[d.Namespace] || d.Spec.Template.Spec.HostNetwork || d.Spec.Replicas == nil || *d.Spec.Replicas == 0 {
			continue
		}
		if err := scale(ctx, client, d.Namespace, d.Name, 0); err != nil {
			errs = append(errs, err)
			continue
		}
		parked = append(parked, parkedDeployment{ns: d.Namespace, name: d.Name, replicas: *d.Spec.Replicas})
		waitFor = append(waitFor, d)
	}
	for _, d := range waitFor {
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil {
			errs = append(errs, fmt.Errorf("deployment %s/%s selector: %w", d.Namespace, d.Name, err))
			continue
		}
		if err := podsGone(ctx, client, d.Namespace, sel); err != nil {
			errs = append(errs, fmt.Errorf("pods of deployment %s/%s: %w", d.Namespace, d.Name, err))
		}
	}
	return parked, errors.Join(errs...)
}

func unpark(ctx context.Context, client kubernetes.Interface, parked []parkedDeployment) error {
	var errs []error
	for _, p := range parked {
		errs = append(errs, scale(ctx, client, p.ns, p.name, p.replicas))
	}
	return errors.Join(errs...)
}

func scale(ctx context.Context, client kubernetes.Interface, ns, name string, n int32) error {
	patch := fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, n)
	if _, err := client.AppsV1().Deployments(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("scale deployment %s/%s to %d: %w", ns, name, n, err)
	}
	return nil
}

// podsGone waits for the pods sel matches to go; past podGoneTimeout the
// rest are deleted with no grace period (their sandboxes' leftovers on the
// nodes are then the node cleanup's to remove).
func podsGone(ctx context.Context, client kubernetes.Interface, ns string, sel labels.Selector) error {
	gone := func(ctx context.Context) (bool, error) {
		pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err != nil {
			return false, nil
		}
		return len(pods.Items) == 0, nil
	}
	if err := poll(ctx, podGoneTimeout, gone); err == nil {
		return nil
	}
	zero := int64(0)
	pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return err
	}
	for _, p := range pods.Items {
		_ = client.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	}
	return poll(ctx, 30*time.Second, gone)
}

// nodesNotReady waits until no node reports Ready: each kubelet has seen
// that its node has no CNI configuration.
func nodesNotReady(ctx context.Context, client kubernetes.Interface) error {
	var ready []string
	err := poll(ctx, 2*time.Minute, func(ctx context.Context) (bool, error) {
		list, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		ready = ready[:0]
		for _, n := range list.Items {
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					ready = append(ready, n.Name)
				}
			}
		}
		return len(ready) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("still Ready without a CNI: %s: %w", strings.Join(ready, ", "), err)
	}
	return nil
}

// splitCustom separates the objects whose kind a CRD among objs defines
// (an operator's Installation) from the rest.
func splitCustom(objs []*unstructured.Unstructured) (custom, rest []*unstructured.Unstructured) {
	defined := map[string]bool{}
	for _, o := range objs {
		if o.GetKind() != "CustomResourceDefinition" {
			continue
		}
		group, _, _ := unstructured.NestedString(o.Object, "spec", "group")
		kind, _, _ := unstructured.NestedString(o.Object, "spec", "names", "kind")
		defined[group+"/"+kind] = true
	}
	for _, o := range objs {
		if defined[o.GroupVersionKind().Group+"/"+o.GetKind()] {
			custom = append(custom, o)
		} else {
			rest = append(rest, o)
		}
	}
	return custom, rest
}

// splitPodNetwork separates the workloads whose pods are on the pod network
// (not hostNetwork) from the rest.
func splitPodNetwork(objs []*unstructured.Unstructured) (podNet, rest []*unstructured.Unstructured) {
	for _, o := range objs {
		switch o.GetKind() {
		case "Deployment", "StatefulSet", "ReplicaSet", "DaemonSet", "Job":
			host, _, _ := unstructured.NestedBool(o.Object, "spec", "template", "spec", "hostNetwork")
			if !host {
				podNet = append(podNet, o)
				continue
			}
		}
		rest = append(rest, o)
	}
	return podNet, rest
}

func refs(objs []*unstructured.Unstructured) string {
	var out []string
	for _, o := range objs {
		out = append(out, install.Ref(o))
	}
	return strings.Join(out, ", ")
}

// deleteObjects deletes objs and waits until every one is gone (foreground
// deletion: a DaemonSet is gone after its pods).
func deleteObjects(ctx context.Context, cfg *rest.Config, objs []*unstructured.Unstructured) error {
	if err := install.Delete(ctx, cfg, objs); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	return install.WaitDeleted(wctx, cfg, objs)
}

type nodeClean struct {
	node    string
	start   time.Time
	removed Residue
	left    Residue
	err     error
}

// cleanNodes removes from every node what it has beyond its baseline and
// reads it again.
func cleanNodes(ctx context.Context, nodes []cluster.Node, base *Baseline) []nodeClean {
	out := make([]nodeClean, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			c := nodeClean{node: n.Name, start: time.Now()}
			defer func() { out[i] = c }()
			b, ok := base.Nodes[n.Name]
			if !ok {
				c.err = fmt.Errorf("no baseline for node %s", n.Name)
				return
			}
			now, err := Snapshot(ctx, n)
			if err != nil {
				c.err = err
				return
			}
			c.removed = Diff(b, now)
			if c.removed.Empty() {
				return
			}
			if err := n.Exec.Run(ctx, nil, nil, "sh", "-c", cleanupScript(c.removed)); err != nil {
				c.err = fmt.Errorf("clean node %s: %w", n.Name, err)
				return
			}
			after, err := Snapshot(ctx, n)
			if err != nil {
				c.err = err
				return
			}
			c.left = Diff(b, after)
		})
	}
	wg.Wait()
	return out
}

func snapshotAll(ctx context.Context, nodes []cluster.Node) ([]NodeState, error) {
	out := make([]NodeState, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { out[i], errs[i] = Snapshot(ctx, n) })
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// cleanNodeObjects removes the annotations and labels a CNI put on the Node
// objects (flannel's backend data, Calico's addresses): those not there at
// the baseline, outside Kubernetes' own kubernetes.io and k8s.io domains.
func cleanNodeObjects(ctx context.Context, client kubernetes.Interface, base *Baseline) ([]string, error) {
	list, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	var removed []string
	var errs []error
	for _, n := range list.Items {
		ann := cniKeys(n.Annotations, base.Annotations[n.Name])
		lab := cniKeys(n.Labels, base.Labels[n.Name])
		if len(ann)+len(lab) == 0 {
			continue
		}
		md := map[string]any{}
		if len(ann) > 0 {
			md["annotations"] = nulls(ann)
		}
		if len(lab) > 0 {
			md["labels"] = nulls(lab)
		}
		patch, _ := json.Marshal(map[string]any{"metadata": md})
		if _, err := client.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", n.Name, err))
			continue
		}
		removed = append(removed, fmt.Sprintf("%s: %d annotations, %d labels", n.Name, len(ann), len(lab)))
	}
	return removed, errors.Join(errs...)
}

func cniKeys(now map[string]string, base map[string]bool) []string {
	var out []string
	for k := range now {
		if base[k] || kubernetesKey(k) {
			continue
		}
		out = append(out, k)
	}
	return out
}

func kubernetesKey(k string) bool {
	domain, _, ok := strings.Cut(k, "/")
	if !ok {
		return false
	}
	return domain == "kubernetes.io" || domain == "k8s.io" || strings.HasSuffix(domain, ".kubernetes.io") || strings.HasSuffix(domain, ".k8s.io")
}

func nulls(ks []string) map[string]any {
	m := map[string]any{}
	for _, k := range ks {
		m[k] = nil
	}
	return m
}

// poll is install.Poll bounded by limit.
func poll(ctx context.Context, limit time.Duration, cond wait.ConditionWithContextFunc) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	return install.Poll(ctx, cond)
}
