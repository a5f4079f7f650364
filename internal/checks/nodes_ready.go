package checks

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// NodesReady waits until every node of the cluster (and every node the
// provider created, should one not have registered) is Ready. A node that is
// not Ready for want of a CNI says so in its Ready condition's message.
type NodesReady struct{}

func (NodesReady) Name() string { return NameNodesReady }

func (c NodesReady) Run(ctx context.Context, env *Env) Result {
	env.init()
	ctx, cancel := context.WithTimeout(ctx, env.Timeout)
	defer cancel()
	t0 := time.Now()
	readyAt := map[string]time.Duration{}
	var nodes []corev1.Node
	var listErr error
	polls := 0
	err := poll(ctx, func(ctx context.Context) (bool, error) {
		polls++
		list, err := env.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			listErr = err
			return false, nil
		}
		listErr, nodes = nil, list.Items
		for i := range nodes {
			if _, seen := readyAt[nodes[i].Name]; !seen && nodeReady(&nodes[i]) {
				readyAt[nodes[i].Name] = time.Since(t0)
			}
		}
		return len(nodes) > 0 && len(readyAt) == len(nodes) && len(missingNodes(env, nodes)) == 0, nil
	})
	var ev []Evidence
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	for i := range nodes {
		n := &nodes[i]
		e := Evidence{Check: c.Name(), Source: "api", Target: "node " + n.Name, OK: nodeReady(n), Detail: describeNode(n), Attempts: polls}
		e.Latency = readyAt[n.Name]
		ev = append(ev, e)
	}
	for _, name := range missingNodes(env, nodes) {
		ev = append(ev, Evidence{Check: c.Name(), Source: "api", Target: "node " + name, Detail: "created by the provider but not registered with the API server", Attempts: polls})
	}
	if err == nil {
		return Result{OK: true, Evidence: ev}
	}
	if listErr != nil {
		return fail(ev, "list nodes: %v (%v)", listErr, err)
	}
	var bad []string
	for _, e := range ev {
		if !e.OK {
			bad = append(bad, strings.TrimPrefix(e.Target, "node ")+": "+e.Detail)
		}
	}
	if len(nodes) == 0 {
		bad = append(bad, "no nodes registered")
	}
	return fail(ev, "nodes not ready after %s: %s", time.Since(t0).Round(time.Second), strings.Join(bad, "; "))
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// missingNodes are env.Nodes that the API server does not know.
func missingNodes(env *Env, nodes []corev1.Node) []string {
	have := map[string]bool{}
	for _, n := range nodes {
		have[n.Name] = true
	}
	var out []string
	for _, n := range env.Nodes {
		if !have[n.Name] {
			out = append(out, n.Name)
		}
	}
	return out
}

// describeNode is the Ready condition plus what identifies the node's
// platform, which is what a matrix reader wants to see next to "Ready".
func describeNode(n *corev1.Node) string {
	ready := "Ready condition missing"
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			ready = "Ready=" + string(c.Status)
			if c.Status != corev1.ConditionTrue {
				ready += ": " + strings.Join([]string{c.Reason, c.Message}, " ")
			}
		}
	}
	ni := n.Status.NodeInfo
	parts := []string{ready}
	if ni.KubeletVersion != "" {
		parts = append(parts, fmt.Sprintf("%s/%s kubelet %s, kernel %s, %s", ni.OperatingSystem, ni.Architecture, ni.KubeletVersion, ni.KernelVersion, ni.ContainerRuntimeVersion))
	}
	for _, t := range n.Spec.Taints {
		if t.Key == "node.kubernetes.io/not-ready" || t.Key == "node.kubernetes.io/network-unavailable" || t.Key == "node.cloudprovider.kubernetes.io/uninitialized" {
			parts = append(parts, "taint "+t.Key+":"+string(t.Effect))
		}
	}
	return strings.Join(parts, ", ")
}

// nodeIP is the node's InternalIP, from the provider or the API.
func nodeIP(env *Env, n *corev1.Node) string {
	for _, cn := range env.Nodes {
		if cn.Name == n.Name && cn.InternalIP != "" {
			return cn.InternalIP
		}
	}
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}
