package checks

import (
	"context"
	"fmt"
)

// PodToPodAcrossNodes fetches the page of every nginx pod on a node other
// than the probe's, by pod IP: the path that crosses the CNI's overlay or
// routes. The page names the serving pod, and it must be the pod targeted
// (an answer from another pod would mean addresses are confused).
type PodToPodAcrossNodes struct{}

func (PodToPodAcrossNodes) Name() string { return NamePodToPodAcrossNodes }

func (PodToPodAcrossNodes) DependsOn() []string { return []string{NameWorkloads} }

func (c PodToPodAcrossNodes) Run(ctx context.Context, env *Env) Result {
	env.init()
	d, err := loadDeployed(ctx, env)
	if err != nil {
		return fail(nil, "%v", err)
	}
	var ev []Evidence
	for i := range d.nginx {
		p := &d.nginx[i]
		if p.Spec.NodeName == d.probe.Spec.NodeName {
			continue
		}
		url := fmt.Sprintf("http://%s/", hostPort(p.Status.PodIP, 80))
		r := env.curlFrom(ctx, d.probe, url, probeAttempts)
		served := servedBy(r.Body, d.nginx)
		ev = append(ev, Evidence{
			Check: c.Name(), Source: d.source(),
			Target:  fmt.Sprintf("pod %s@%s %s", p.Name, p.Spec.NodeName, url),
			OK:      r.Err == "" && r.Code == 200 && served == p.Name,
			Detail:  detailHTTP(r, served, p.Name),
			Latency: r.Latency, Attempts: r.Attempts,
		})
	}
	if len(ev) == 0 {
		return skip(nil, "no ready nginx pod on a node other than the probe's %s (%d ready nginx pods): needs 2 nodes", d.probe.Spec.NodeName, len(d.nginx))
	}
	return summarize(ev)
}
