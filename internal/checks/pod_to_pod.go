package checks

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/cnimatrix/cnimatrix/internal/install"
)

// PodToPodAcrossNodes fetches, from the probe pod on every node, the page of
// every nginx pod on another node, by pod IP: the path that crosses the CNI's
// overlay or routes, in both directions (on a mixed-arch cluster, amd64 to
// arm64 and back, which is where encapsulation or offload bugs of one arch
// show). The page names the serving pod, and it must be the pod targeted (an
// answer from another pod would mean addresses are confused).
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
	for _, pr := range crossNodePairs(d.probes, d.nginx) {
		from, to := pr.from, pr.to
		url := fmt.Sprintf("http://%s/", hostPort(to.Status.PodIP, 80))
		e := Evidence{Check: c.Name(), Source: podRef(from), Target: fmt.Sprintf("pod %s@%s %s", to.Name, to.Spec.NodeName, url)}
		if !install.PodReady(from) {
			// Workloads saw it ready; losing it since is a finding, not a
			// reason to probe from fewer nodes.
			e.Detail = "probe pod not ready: " + install.DescribePod(from, nil).String()
			ev = append(ev, e)
			continue
		}
		r := env.curlFrom(ctx, from, url, probeAttempts)
		served := servedBy(r.Body, d.nginx)
		e.OK = r.Err == "" && r.Code == 200 && served == to.Name
		e.Detail = detailHTTP(r, served, to.Name)
		e.Latency, e.Attempts, e.Harness = r.Latency, r.Attempts, r.Harness
		ev = append(ev, e)
	}
	if len(ev) == 0 {
		return skip(nil, "no probe pod and ready nginx pod on different nodes (%d probe pods, %d ready nginx pods): needs 2 nodes", len(d.probes), len(d.nginx))
	}
	return summarize(ev)
}

type podPair struct{ from, to *corev1.Pod }

// crossNodePairs is every (probe, nginx) pair on different nodes, grouped by
// probe in the order given.
func crossNodePairs(probes, nginx []corev1.Pod) []podPair {
	var out []podPair
	for i := range probes {
		for j := range nginx {
			if probes[i].Spec.NodeName != nginx[j].Spec.NodeName {
				out = append(out, podPair{&probes[i], &nginx[j]})
			}
		}
	}
	return out
}
