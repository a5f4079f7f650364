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

// CalicoNodeReady waits until every node runs a Ready calico-node pod and
// then asks each one's felix (and, where the pod's readiness probe checks
// it, BIRD) whether it is ready, with the pod's own readiness command: a
// pod Ready for the kubelet but whose felix says otherwise is flapping. A
// node without a ready pod is described by its container states and its
// last readiness-probe failure, which is where calico-node says what it
// waits for ("BIRD is not ready: ...", "felix is not ready: ...").
type CalicoNodeReady struct {
	// Namespace overrides where calico-node is looked for (default: the
	// CNI namespace, then calico-system, then kube-system).
	Namespace string
}

func (CalicoNodeReady) Name() string { return NameCalicoNodeReady }

func (c CalicoNodeReady) Run(ctx context.Context, env *Env) Result {
	env.init()
	ctx, cancel := context.WithTimeout(ctx, env.Timeout)
	defer cancel()
	t0 := time.Now()
	var (
		ns    string
		nodes []string
		pods  []corev1.Pod
		state string
		polls int
	)
	err := poll(ctx, func(ctx context.Context) (bool, error) {
		polls++
		found, err := findCalicoNamespace(ctx, env, c.Namespace)
		if err != nil {
			state = err.Error()
			return false, nil
		}
		if found == "" {
			state = fmt.Sprintf("no pods labelled %s in %s", calicoNodeSelector, strings.Join(calicoNamespaces(env, c.Namespace), ", "))
			return false, nil
		}
		ns = found
		nl, err := env.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			state = "list nodes: " + err.Error()
			return false, nil
		}
		pl, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: calicoNodeSelector})
		if err != nil {
			state = "list calico-node pods: " + err.Error()
			return false, nil
		}
		nodes = nodes[:0]
		for _, n := range nl.Items {
			nodes = append(nodes, n.Name)
		}
		pods = pl.Items
		per := calicoNodePerNode(nodes, pods)
		ready := 0
		for _, p := range per {
			if p.ready != nil {
				ready++
			}
		}
		state = fmt.Sprintf("%d/%d nodes with a ready calico-node pod", ready, len(per))
		return len(per) > 0 && ready == len(per), nil
	})
	waited := time.Since(t0)
	if ns == "" {
		return fail(nil, "calico-node not found after %s: %s", waited.Round(time.Second), state)
	}

	// Evidence is collected after the wait, whose context may be over.
	ectx, ecancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer ecancel()
	events, _ := install.WarningEvents(ectx, env.Client, ns)
	var ev []Evidence
	for _, p := range calicoNodePerNode(nodes, pods) {
		e := Evidence{Check: c.Name(), Source: "api", Target: "node " + p.node, Attempts: polls}
		switch {
		case len(p.pods) == 0:
			e.Detail = fmt.Sprintf("no calico-node pod on this node (namespace %s)", ns)
		case p.ready != nil:
			health, ok := calicoHealth(ectx, env, p.ready)
			e.OK = ok
			e.Detail = fmt.Sprintf("pod %s/%s %s; %s", ns, p.ready.Name, describeReadyPod(p.ready), health)
			e.Latency = waited
		default:
			var parts []string
			for _, pod := range p.pods {
				parts = append(parts, describeUnreadyCalicoNode(ectx, env, pod, events))
			}
			e.Detail = strings.Join(parts, " | ")
		}
		ev = append(ev, e)
	}
	for _, pod := range calicoNodeStrays(nodes, pods) {
		// Pods on nodes the API no longer lists, or not scheduled yet:
		// worth seeing, not a failure of any node.
		ev = append(ev, Evidence{Check: c.Name(), Source: "api", Target: "pod " + ns + "/" + pod.Name, OK: true,
			Detail: "not on a listed node: " + install.DescribePod(pod, nil).String()})
	}
	r := summarize(ev)
	if err != nil && r.OK {
		return fail(ev, "%s after %s: %v", state, waited.Round(time.Second), err)
	}
	if !r.OK {
		r.Err = "calico-node not ready: " + r.Err
	}
	return r
}

// calicoNodeOnNode is the calico-node pods of one node; ready is one of them
// that is Ready (during a rollout a node may have two), or nil.
type calicoNodeOnNode struct {
	node  string
	pods  []*corev1.Pod
	ready *corev1.Pod
}

// calicoNodePerNode groups pods by node, one entry per node in nodes
// (sorted by name).
func calicoNodePerNode(nodes []string, pods []corev1.Pod) []calicoNodeOnNode {
	names := append([]string(nil), nodes...)
	sort.Strings(names)
	out := make([]calicoNodeOnNode, 0, len(names))
	for _, n := range names {
		e := calicoNodeOnNode{node: n}
		for i := range pods {
			p := &pods[i]
			if p.Spec.NodeName != n {
				continue
			}
			e.pods = append(e.pods, p)
			if e.ready == nil && install.PodReady(p) && p.DeletionTimestamp == nil {
				e.ready = p
			}
		}
		out = append(out, e)
	}
	return out
}

// calicoNodeStrays are pods on no node of the list.
func calicoNodeStrays(nodes []string, pods []corev1.Pod) []*corev1.Pod {
	known := map[string]bool{}
	for _, n := range nodes {
		known[n] = true
	}
	var out []*corev1.Pod
	for i := range pods {
		if !known[pods[i].Spec.NodeName] {
			out = append(out, &pods[i])
		}
	}
	return out
}

// describeUnreadyCalicoNode is a not-ready pod's container states, its last
// readiness-probe failure and, when calico-node is running, what its health
// commands say now.
func describeUnreadyCalicoNode(ctx context.Context, env *Env, p *corev1.Pod, events install.EventIndex) string {
	var probeFail *install.EventReport
	var other []install.EventReport
	for _, e := range events.For("Pod", p.Name, string(p.UID)) {
		if e.Reason == "Unhealthy" && strings.HasPrefix(e.Message, "Readiness probe") {
			probeFail = &e
			continue
		}
		other = append(other, e)
	}
	s := install.DescribePod(p, other).String()
	if probeFail != nil {
		s += "; last readiness probe failure: " + strings.TrimSpace(probeFail.Message)
		if probeFail.Count > 1 {
			s += fmt.Sprintf(" (x%d)", probeFail.Count)
		}
	} else {
		s += "; no readiness probe failure recorded"
	}
	if calicoNodeRunning(p) {
		health, _ := calicoHealth(ctx, env, p)
		s += "; " + health
	}
	return s
}

func calicoNodeRunning(p *corev1.Pod) bool {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == calicoNodeContainer && cs.State.Running != nil {
			return true
		}
	}
	return false
}

// calicoNodeMain is the calico-node container (by name, else the first
// one with an exec readiness probe).
func calicoNodeMain(p *corev1.Pod) *corev1.Container {
	for i := range p.Spec.Containers {
		if p.Spec.Containers[i].Name == calicoNodeContainer {
			return &p.Spec.Containers[i]
		}
	}
	for i := range p.Spec.Containers {
		if rp := p.Spec.Containers[i].ReadinessProbe; rp != nil && rp.Exec != nil {
			return &p.Spec.Containers[i]
		}
	}
	return nil
}

// healthCommands splits the container's exec readiness probe into one
// command per component it checks. The probe's argv differs across
// versions and install methods (`calico-node -bird-ready -felix-ready`,
// `calico-node -felix-ready` without BGP, `calico component node health
// --bird-ready --felix-ready` in newer operators), so it is read, not
// assumed: the words before the flags are kept, each "...-ready" flag gets a
// command of its own. nil when the probe is not exec (v3.1's HTTP probe).
func healthCommands(c *corev1.Container) (names []string, cmds [][]string) {
	if c == nil || c.ReadinessProbe == nil || c.ReadinessProbe.Exec == nil {
		return nil, nil
	}
	var base, flags []string
	for _, a := range c.ReadinessProbe.Exec.Command {
		if strings.HasPrefix(a, "-") {
			if strings.HasSuffix(a, "-ready") {
				flags = append(flags, a)
			}
			continue
		}
		if len(flags) == 0 {
			base = append(base, a)
		}
	}
	for _, f := range flags {
		names = append(names, strings.TrimLeft(f, "-"))
		cmds = append(cmds, append(append([]string(nil), base...), f))
	}
	return names, cmds
}

// calicoHealthTimeout is calico-node's own probe's limit for one health
// command; the exec round trip (Env.execSlack) comes on top.
const calicoHealthTimeout = 10 * time.Second

// calicoHealth runs each health command of p's readiness probe in the
// calico-node container. ok is false only when a component answered that
// it is not ready; an exec that could not run is reported, not held
// against the pod, whose readiness the kubelet already judged.
func calicoHealth(ctx context.Context, env *Env, p *corev1.Pod) (string, bool) {
	c := calicoNodeMain(p)
	if c == nil {
		return "no calico-node container in the pod spec", true
	}
	names, cmds := healthCommands(c)
	if len(cmds) == 0 {
		if rp := c.ReadinessProbe; rp != nil && rp.HTTPGet != nil {
			return fmt.Sprintf("readiness is felix's HTTP endpoint %s:%s (judged by the kubelet)", rp.HTTPGet.Path, rp.HTTPGet.Port.String()), true
		}
		return "no exec readiness probe to ask felix with", true
	}
	// env.exec runs in the pod's first container: hand it a pod whose only
	// container is calico-node.
	target := p.DeepCopy()
	target.Spec.Containers = []corev1.Container{*c}
	ok := true
	var parts []string
	for i, cmd := range cmds {
		cctx, cancel := context.WithTimeout(ctx, calicoHealthTimeout+env.execSlack())
		out := env.exec(cctx, target, cmd...)
		cancel()
		msg := excerpt(strings.TrimSpace(out.Stdout+" "+out.Stderr), 200)
		switch {
		case out.Err != nil:
			parts = append(parts, fmt.Sprintf("%s: could not ask (%v)", names[i], out.Err))
		case out.Code == 0:
			parts = append(parts, names[i]+": ok")
		default:
			ok = false
			parts = append(parts, fmt.Sprintf("%s: NOT ready (exit %d): %s", names[i], out.Code, orDash(msg)))
		}
	}
	return strings.Join(parts, ", "), ok
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
