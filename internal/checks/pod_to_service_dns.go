package checks

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cnimatrix/cnimatrix/internal/install"
)

// clusterDomain is kubeadm's default, which every provider here keeps.
const clusterDomain = "cluster.local"

// PodToServiceDNS resolves the nginx Service's name from the primary probe
// pod with dig (through the pod's resolv.conf, i.e. CoreDNS over the pod
// network), expects the ClusterIP, then fetches the page by name.
type PodToServiceDNS struct{}

func (PodToServiceDNS) Name() string { return NamePodToServiceDNS }

func (PodToServiceDNS) DependsOn() []string { return []string{NameWorkloads, NameCoreDNSReady} }

func (c PodToServiceDNS) Run(ctx context.Context, env *Env) Result {
	env.init()
	d, err := loadDeployed(ctx, env)
	if err != nil {
		return fail(nil, "%v", err)
	}
	name := fmt.Sprintf("%s.%s.svc.%s", nginxName, env.Namespace, clusterDomain)
	want := d.svc.Spec.ClusterIP
	qtype := "A"
	if ip := net.ParseIP(want); ip != nil && ip.To4() == nil {
		qtype = "AAAA"
	}
	q := env.digFrom(ctx, d.probe, name, qtype)
	dnsEv := Evidence{
		Check: c.Name(), Source: d.source(), Target: "dns " + name + " " + qtype,
		OK:      q.Err == "" && slices.Contains(q.Answers, want),
		Latency: q.Latency, Attempts: q.Attempts, Harness: q.Harness,
	}
	switch {
	case q.Err != "":
		dnsEv.Detail = q.Err
	default:
		ans := strings.Join(q.Answers, " ")
		if ans == "" {
			ans = "no answer"
		}
		dnsEv.Detail = fmt.Sprintf("%s %s from %s (ClusterIP %s)", q.Status, ans, q.Server, want)
	}
	ev := []Evidence{dnsEv}
	if !dnsEv.OK {
		// Fetching by name cannot work; the lookup's evidence says why.
		return summarize(ev)
	}
	// The Service's answer came from one CoreDNS replica, whichever
	// kube-proxy picked: ask each replica itself, so the evidence says on
	// which node and arch DNS was served (in a mixed cluster CoreDNS
	// usually runs on the control plane, not on the arch under test).
	ev = append(ev, c.perReplica(ctx, env, d, name, qtype, want)...)
	url := fmt.Sprintf("http://%s/", net.JoinHostPort(name, fmt.Sprint(d.svc.Spec.Ports[0].Port)))
	r := env.curlFrom(ctx, d.probe, url, probeAttempts)
	served := servedBy(r.Body, d.nginx)
	ev = append(ev, Evidence{
		Check: c.Name(), Source: d.source(), Target: "service " + url,
		OK:      r.Err == "" && r.Code == 200 && served != "",
		Detail:  detailHTTP(r, served, ""),
		Latency: r.Latency, Attempts: r.Attempts, Harness: r.Harness,
	})
	return summarize(ev)
}

// perReplica resolves name at each Ready CoreDNS pod from the probe pod.
func (c PodToServiceDNS) perReplica(ctx context.Context, env *Env, d *deployed, name, qtype, want string) []Evidence {
	pods, err := env.Client.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=kube-dns"})
	if err != nil {
		return []Evidence{{Check: c.Name(), Source: "api", Target: "CoreDNS pods", Detail: "list CoreDNS pods: " + err.Error()}}
	}
	archOf := nodeArches(ctx, env)
	var ev []Evidence
	for i := range pods.Items {
		p := &pods.Items[i]
		if !install.PodReady(p) || p.Status.PodIP == "" {
			continue
		}
		arch := archOf[p.Spec.NodeName]
		q := env.digFrom(ctx, d.probe, name, qtype, p.Status.PodIP)
		e := Evidence{
			Check: c.Name(), Source: d.source(),
			Target:  fmt.Sprintf("dns %s %s at CoreDNS pod %s@%s (%s, %s)", name, qtype, p.Name, p.Spec.NodeName, orNone(arch), p.Status.PodIP),
			OK:      q.Err == "" && slices.Contains(q.Answers, want),
			Latency: q.Latency, Attempts: q.Attempts, Harness: q.Harness,
		}
		if q.Err != "" {
			e.Detail = q.Err
		} else {
			e.Detail = fmt.Sprintf("%s %s, served on %s node %s", q.Status, strings.Join(q.Answers, " "), orNone(arch), p.Spec.NodeName)
		}
		ev = append(ev, e)
	}
	if len(ev) == 0 {
		ev = append(ev, Evidence{Check: c.Name(), Source: "api", Target: "CoreDNS pods", Detail: "no Ready CoreDNS pod with an address to ask"})
	}
	return ev
}

// nodeArches maps node names to their kubernetes.io/arch label (empty when
// the nodes cannot be listed: the evidence then says "none").
func nodeArches(ctx context.Context, env *Env) map[string]string {
	out := map[string]string{}
	nodes, err := env.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return out
	}
	for _, n := range nodes.Items {
		out[n.Name] = n.Labels[corev1.LabelArchStable]
	}
	return out
}
