package checks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// HostToNodePort fetches the nginx Service's NodePort on every node's
// InternalIP from this process, i.e. from outside the cluster, until every
// nginx pod has answered through each node (see runSweep): the path through
// kube-proxy's NodePort rules and, for backends on other nodes, the CNI's
// node-to-pod routes.
type HostToNodePort struct{}

func (HostToNodePort) Name() string { return NameHostToNodePort }

func (HostToNodePort) DependsOn() []string { return []string{NameWorkloads} }

func (c HostToNodePort) Run(ctx context.Context, env *Env) Result {
	env.init()
	d, err := loadDeployed(ctx, env)
	if err != nil {
		return fail(nil, "%v", err)
	}
	np := d.svc.Spec.Ports[0].NodePort
	if np == 0 {
		return fail(nil, "service %s/%s has no NodePort", env.Namespace, nginxName)
	}
	nodes, err := env.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fail(nil, "list nodes: %v", err)
	}
	// The host's proxy settings must not apply: node addresses are local.
	client := &http.Client{
		Timeout:   probeMaxTime * time.Second,
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
	}
	var ev []Evidence
	for i := range nodes.Items {
		n := &nodes.Items[i]
		ip := nodeIP(env, n)
		if ip == "" {
			ev = append(ev, Evidence{Check: c.Name(), Source: "host", Target: "node " + n.Name, Detail: "node has no InternalIP"})
			continue
		}
		url := fmt.Sprintf("http://%s/", hostPort(ip, np))
		s := runSweep(ctx, d.nginx, func(ctx context.Context) httpProbe { return httpGet(ctx, client, url, 1) })
		ev = append(ev, s.evidence(c.Name(), "host", fmt.Sprintf("node %s %s", n.Name, url))...)
	}
	return summarize(ev)
}

// httpGet fetches url from this process, up to attempts times while no
// response arrives (connection refused, reset, timeout).
func httpGet(ctx context.Context, client *http.Client, url string, attempts int) httpProbe {
	var p httpProbe
	p.Attempts = retry(ctx, attempts, func(ctx context.Context) bool {
		p = httpProbe{}
		t0 := time.Now()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			p.Err = err.Error()
			return false
		}
		resp, err := client.Do(req)
		if err != nil {
			p.Err, p.Latency = err.Error(), time.Since(t0)
			return !errors.Is(err, context.Canceled)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		p.Latency = time.Since(t0)
		p.Code, p.Body = resp.StatusCode, string(body)
		if err != nil {
			// Headers came but the body broke off: the path is flaky, retry.
			p.Err = fmt.Sprintf("HTTP %d, reading body: %v", resp.StatusCode, err)
			return true
		}
		return false
	})
	return p
}
