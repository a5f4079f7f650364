package checks

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
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
