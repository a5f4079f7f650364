package checks

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// kindNodeExec runs commands on a kind node (a container named after the
// node), standing in for the provider's Execer in tests against a cluster
// given by kubeconfig.
type kindNodeExec struct{ container string }

func (k kindNodeExec) Run(ctx context.Context, stdout, stderr io.Writer, argv ...string) error {
	cmd := exec.CommandContext(ctx, "docker", append([]string{"exec", k.container}, argv...)...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("docker exec %s %s: %w", k.container, strings.Join(argv, " "), err)
	}
	return nil
}

// realKindEnv is realEnv with node exec through docker: the cluster of
// $CNIMATRIX_KUBECONFIG must be a kind cluster on this machine.
func realKindEnv(t *testing.T, ns string) *Env {
	t.Helper()
	env := realEnv(t, ns)
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("no docker to exec on kind nodes")
	}
	for i := range env.Nodes {
		env.Nodes[i].Exec = kindNodeExec{container: env.Nodes[i].Name}
	}
	return env
}

// TestRealTunnelDeviceFlannel checks flannel's VXLAN device on every node of
// a flannel cluster, and that a device that is not there fails the check.
func TestRealTunnelDeviceFlannel(t *testing.T) {
	env := realKindEnv(t, "cnimatrix-checks-tunnel")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t0 := time.Now()
	r := TunnelDevice{Device: "flannel.1"}.Run(ctx, env)
	t.Logf("%s [%s]", r, time.Since(t0))
	if !r.OK || len(r.Evidence) != len(env.Nodes) {
		t.Fatalf("flannel.1 on %d nodes: %s", len(env.Nodes), r)
	}
	for _, e := range r.Evidence {
		if !strings.Contains(e.Detail, "vxlan id ") || !strings.Contains(e.Detail, "UP") {
			t.Errorf("%s: %s", e.Source, e.Detail)
		}
	}
	// The same cluster has no Calico tunnel: the check must say so.
	t0 = time.Now()
	r = TunnelDevice{Encapsulation: "VXLAN", Wait: 5 * time.Second}.Run(ctx, env)
	t.Logf("%s [%s]", r, time.Since(t0))
	if r.OK || !strings.Contains(r.Err, `Device "vxlan.calico" does not exist`) {
		t.Errorf("vxlan.calico on a flannel cluster: %s", r)
	}
}

// TestRealNetworkPolicyFlannel runs the NetworkPolicy check on a flannel
// cluster, which does not enforce policy: it must fail saying so, and leave
// no policy behind.
func TestRealNetworkPolicyFlannel(t *testing.T) {
	env := realKindEnv(t, "cnimatrix-checks-netpol")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	env.KeepNamespace = true // looked at below; deleted at the end
	defer func() {
		tctx, tcancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer tcancel()
		if err := Teardown(tctx, env); err != nil {
			t.Errorf("teardown: %v", err)
		}
	}()
	checks, err := ByName([]string{NameNodesReady, NameCNIPodsReady, NameWorkloads})
	if err != nil {
		t.Fatal(err)
	}
	checks = append(checks, NetworkPolicy{Wait: 30 * time.Second}, NoPodStuckCreating{})
	got := map[string]Result{}
	for _, r := range Run(ctx, env, checks) {
		t.Logf("%s", r)
		got[r.Name] = r
	}
	if !got[NameWorkloads].OK {
		t.Fatalf("workloads: %s", got[NameWorkloads].Err)
	}
	r := got[NameNetworkPolicy]
	if r.OK || r.Skipped() || !strings.HasPrefix(r.Err, "NetworkPolicy not enforced: request still served under default-deny") {
		t.Errorf("NetworkPolicy on flannel: %s", r)
	}
	if len(r.Evidence) != 2 || !r.Evidence[0].OK || r.Evidence[1].OK {
		t.Errorf("want a served baseline and a served request under deny: %s", r)
	}
	if r.Duration < 30*time.Second {
		t.Errorf("gave up after %s, before its 30s wait", r.Duration)
	}
	if s := got[NameNoPodStuckCreating]; !s.OK {
		t.Errorf("NoPodStuckCreating: %s", s)
	}
	lctx, lcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer lcancel()
	left, err := env.Client.NetworkingV1().NetworkPolicies(env.Namespace).List(lctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(left.Items) != 0 {
		t.Errorf("%d policies left in %s", len(left.Items), env.Namespace)
	}
}
