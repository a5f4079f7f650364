package checks

import (
	"context"
	"fmt"
	"strings"
)

// PodToClusterIP fetches the nginx Service's ClusterIP from the primary
// probe pod until every nginx pod has answered through it (see runSweep), so
// a backend on a node the pod network cannot reach fails the check instead
// of being hidden behind the reachable ones. A wrong targetPort shows here as
// refused connections.
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
	s := runSweep(ctx, d.nginx, func(ctx context.Context) httpProbe { return env.curlFrom(ctx, d.probe, url, 1) })
	target := fmt.Sprintf("service %s %s (targetPort %s)", nginxName, url, sp.TargetPort.String())
	return summarize(s.evidence(c.Name(), d.source(), target))
}
