package checks

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cnimatrix/cnimatrix/internal/install"
)

// CoreDNSReady waits until the coredns Deployment is available. Its pods are
// the first pod-network pods of a cluster and their readiness probe needs the
// API server through the kubernetes Service, so this is already a small test
// of the pod network and of Service routing.
type CoreDNSReady struct{}

func (CoreDNSReady) Name() string { return NameCoreDNSReady }

func (CoreDNSReady) DependsOn() []string { return []string{NameCNIPodsReady} }

func (c CoreDNSReady) Run(ctx context.Context, env *Env) Result {
	env.init()
	wctx, cancel := context.WithTimeout(ctx, env.Timeout)
	defer cancel()
	t0 := time.Now()
	werr := install.WaitWorkloads(wctx, env.Client, []install.Workload{{Kind: "Deployment", Namespace: "kube-system", Name: "coredns"}}, env.Log)
	took := time.Since(t0)

	ectx, ecancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer ecancel()
	var ev []Evidence
	pods, err := env.Client.CoreV1().Pods("kube-system").List(ectx, metav1.ListOptions{LabelSelector: "k8s-app=kube-dns"})
	if err == nil {
		events, _ := install.WarningEvents(ectx, env.Client, "kube-system")
		// Where CoreDNS runs is part of the answer: in a mixed cluster it
		// may serve the arch under test from the other arch's node.
		archOf := nodeArches(ectx, env)
		for i := range pods.Items {
			p := &pods.Items[i]
			e := Evidence{Check: c.Name(), Source: "api", Target: fmt.Sprintf("pod kube-system/%s@%s (%s, %s)", p.Name, p.Spec.NodeName, orNone(archOf[p.Spec.NodeName]), p.Status.PodIP), OK: install.PodReady(p)}
			if e.OK {
				e.Detail, e.Latency = describeReadyPod(p), took
			} else {
				e.Detail = install.DescribePod(p, events.For("Pod", p.Name, string(p.UID))).String()
			}
			ev = append(ev, e)
		}
	}
	if werr != nil {
		return fail(ev, "%v", werr)
	}
	return Result{OK: true, Evidence: ev}
}
