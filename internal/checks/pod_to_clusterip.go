package checks

import (
	"context"
	"fmt"
	"strings"
)

// PodToClusterIP fetches the nginx Service's ClusterIP from the probe pod,
// once per nginx pod, recording which backend answered each time. A wrong
// targetPort shows here as refused connections.
type PodToClusterIP struct{}

func (PodToClusterIP) Name() string { return NamePodToClusterIP }

func (PodToClusterIP) DependsOn() []string { return []string{NameWorkloads} }

func (c PodToClusterIP) Run(ctx context.Context, env *Env) Result {
	env.init()
	d, err := loadDeployed(ctx, env)
	if err != nil {
		return fail(nil, "%v", err)
	}
	ip := d.svc.Spec.ClusterIP
	if ip == "" || strings.EqualFold(ip, "None") {
		return fail(nil, "service %s/%s has no ClusterIP", env.Namespace, nginxName)
	}
	sp := d.svc.Spec.Ports[0]
	url := fmt.Sprintf("http://%s/", hostPort(ip, sp.Port))
	target := fmt.Sprintf("service %s %s (targetPort %s)", nginxName, url, sp.TargetPort.String())
	var ev []Evidence
	for range d.nginx {
		r := env.curlFrom(ctx, d.probe, url)
		served := servedBy(r.Body, d.nginx)
		ev = append(ev, Evidence{
			Check: c.Name(), Source: d.source(), Target: target,
			OK:      r.Err == "" && r.Code == 200 && served != "",
			Detail:  detailHTTP(r, served, ""),
			Latency: r.Latency, Attempts: r.Attempts,
		})
	}
	return summarize(ev)
}
