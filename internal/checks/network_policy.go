package checks

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
)

// NetworkPolicy checks that the CNI enforces Kubernetes NetworkPolicy: from
// the primary probe pod, an nginx pod (on another node when there is one)
// answers; a default-deny ingress policy on the nginx pods must make the
// request fail, and an allow policy admitting the probe pods' label must
// make it succeed again. Policies are programmed asynchronously, so each
// step waits (bounded, with backoff) for the change to take effect. Both
// policies are deleted afterwards and the request is made once more, so
// later checks see the namespace as it was. A CNI that does not implement
// policy (flannel) fails this check, which is the right verdict.
type NetworkPolicy struct {
	// Wait bounds each wait for the dataplane to follow a policy change;
	// default env.Timeout/3 (1m with the default timeout; longer where the
	// engine scales timeouts for slow nodes).
	Wait time.Duration
}

func (NetworkPolicy) Name() string { return NameNetworkPolicy }

func (NetworkPolicy) DependsOn() []string { return []string{NameWorkloads} }

const (
	denyPolicyName  = "cnimatrix-deny-nginx"
	allowPolicyName = "cnimatrix-allow-probe"
)

// notEnforced starts the failure of a CNI that ignores policy.
const notEnforced = "NetworkPolicy not enforced: request still served under default-deny"

func (c NetworkPolicy) Run(ctx context.Context, env *Env) Result {
	env.init()
	wait := c.Wait
	if wait <= 0 {
		wait = env.Timeout / 3
	}
	d, err := loadDeployed(ctx, env)
	if err != nil {
		return fail(nil, "%v", err)
	}
	src, dst := d.probe, policyTarget(d)
	url := fmt.Sprintf("http://%s/", hostPort(dst.Status.PodIP, 80))
	target := fmt.Sprintf("pod %s@%s %s", dst.Name, dst.Spec.NodeName, url)
	evidence := func(ok bool, detail string, p httpProbe, n int) Evidence {
		return Evidence{Check: c.Name(), Source: podRef(src), Target: target, OK: ok, Detail: detail, Latency: p.Latency, Attempts: n, Harness: !ok && p.Harness}
	}
	served := func(p httpProbe) bool { return p.Err == "" && p.Code == 200 && servedBy(p.Body, d.nginx) == dst.Name }
	blocked := func(p httpProbe) bool { return p.Err != "" }

	var ev []Evidence
	base := env.curlFrom(ctx, src, url, probeAttempts)
	ev = append(ev, evidence(served(base), "no policy: "+detailHTTP(base, servedBy(base.Body, d.nginx), dst.Name), base, base.Attempts))
	if !served(base) {
		r := fail(ev, "without any policy the request already fails, so policy cannot be tested: %s", detailHTTP(base, servedBy(base.Body, d.nginx), dst.Name))
		r.Infra = base.Harness
		return r
	}

	policies := env.Client.NetworkingV1().NetworkPolicies(env.Namespace)
	var created []string
	defer func() {
		// Deny first: deleting allow first would leave deny alone in force.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		for _, name := range created {
			_ = policies.Delete(cctx, name, metav1.DeleteOptions{})
		}
	}()

	if _, err := policies.Create(ctx, denyPolicy(env.Namespace), metav1.CreateOptions{}); err != nil {
		return fail(ev, "create NetworkPolicy %s/%s: %v", env.Namespace, denyPolicyName, err)
	}
	created = append(created, denyPolicyName)
	p, n, took, ok := c.until(ctx, env, src, url, wait, blocked)
	if !ok {
		ev = append(ev, evidence(false, fmt.Sprintf("under default-deny %s: still served after %s: %s", denyPolicyName, took.Round(100*time.Millisecond), detailHTTP(p, servedBy(p.Body, d.nginx), dst.Name)), p, n))
		return fail(ev, "%s (%d requests over %s)", notEnforced, n, took.Round(time.Second))
	}
	ev = append(ev, evidence(true, fmt.Sprintf("under default-deny %s: blocked after %s: %s", denyPolicyName, took.Round(100*time.Millisecond), p.Err), p, n))

	if _, err := policies.Create(ctx, allowPolicy(env.Namespace), metav1.CreateOptions{}); err != nil {
		return fail(ev, "create NetworkPolicy %s/%s: %v", env.Namespace, allowPolicyName, err)
	}
	created = append(created, allowPolicyName)
	p, n, took, ok = c.until(ctx, env, src, url, wait, served)
	detail := fmt.Sprintf("with %s admitting %s=%s: ", allowPolicyName, appLabel, probeApp)
	if !ok {
		ev = append(ev, evidence(false, detail+fmt.Sprintf("still blocked after %s: %s", took.Round(100*time.Millisecond), detailHTTP(p, servedBy(p.Body, d.nginx), dst.Name)), p, n))
		return fail(ev, "allow policy did not restore the request within %s (%d requests): %s", took.Round(time.Second), n, detailHTTP(p, servedBy(p.Body, d.nginx), dst.Name))
	}
	ev = append(ev, evidence(true, detail+fmt.Sprintf("served again after %s", took.Round(100*time.Millisecond)), p, n))

	// Clean up here rather than in the deferred delete, to see the effect.
	var delErrs []error
	for _, name := range created {
		if err := policies.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			delErrs = append(delErrs, fmt.Errorf("delete NetworkPolicy %s/%s: %w", env.Namespace, name, err))
		}
	}
	created = nil
	if err := errors.Join(delErrs...); err != nil {
		return fail(ev, "%v", err)
	}
	p, n, took, ok = c.until(ctx, env, src, url, wait, served)
	state := "served"
	if !ok {
		state = "NOT served"
	}
	ev = append(ev, evidence(ok, fmt.Sprintf("policies deleted: %s after %s", state, took.Round(100*time.Millisecond)), p, n))
	if !ok {
		return fail(ev, "request not served again within %s after the policies were deleted: %s", took.Round(time.Second), detailHTTP(p, servedBy(p.Body, d.nginx), dst.Name))
	}
	return Result{OK: true, Evidence: ev}
}

// policyTarget is an nginx pod on another node than the primary probe if
// there is one: policy has to hold on the path that crosses nodes.
func policyTarget(d *deployed) *corev1.Pod {
	for i := range d.nginx {
		if d.nginx[i].Spec.NodeName != d.probe.Spec.NodeName {
			return &d.nginx[i]
		}
	}
	return &d.nginx[0]
}

// until requests url from src, one attempt at a time, until cond holds for
// the outcome or wait is over. It returns the last outcome, the number of
// requests and how long it took. An exec that failed (API server, kubelet)
// is no outcome of the request and is only retried: it must not pass for a
// request the policy blocked.
func (NetworkPolicy) until(ctx context.Context, env *Env, src *corev1.Pod, url string, wait time.Duration, cond func(httpProbe) bool) (httpProbe, int, time.Duration, bool) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	t0 := time.Now()
	b := policyBackoff()
	var last httpProbe
	n := 0
	for {
		n++
		actx, acancel := context.WithTimeout(ctx, env.curlDeadline())
		out := env.exec(actx, src, curlArgv(url)...)
		acancel()
		last = parseCurl(out, env.curlDeadline())
		last.Attempts = 1
		if out.Err == nil && cond(last) {
			return last, n, time.Since(t0), true
		}
		t := time.NewTimer(b.Step())
		select {
		case <-ctx.Done():
			t.Stop()
			return last, n, time.Since(t0), false
		case <-t.C:
		}
	}
}

// policyBackoff starts fast, since Calico usually programs policy within a
// second or two, and settles at 5 s; the wait's deadline ends it.
func policyBackoff() wait.Backoff {
	return wait.Backoff{Duration: 300 * time.Millisecond, Factor: 1.6, Jitter: 0.1, Steps: 1 << 20, Cap: 5 * time.Second}
}

func nginxSelector() metav1.LabelSelector {
	return metav1.LabelSelector{MatchLabels: map[string]string{appLabel: nginxApp}}
}

// denyPolicy selects the nginx pods for ingress and allows nothing.
func denyPolicy(ns string) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: denyPolicyName, Namespace: ns, Labels: owned(nil)},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: nginxSelector(),
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	}
}

// allowPolicy admits the probe pods to nginx's port 80.
func allowPolicy(ns string) *networkingv1.NetworkPolicy {
	tcp := corev1.ProtocolTCP
	port := intstr.FromInt32(80)
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: allowPolicyName, Namespace: ns, Labels: owned(nil)},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: nginxSelector(),
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{appLabel: probeApp}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
			}},
		},
	}
}
