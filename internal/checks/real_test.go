package checks

import (
	"context"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
	"github.com/cnimatrix/cnimatrix/internal/logx"
)

// realEnv is an Env for the cluster named by $CNIMATRIX_KUBECONFIG (a
// disposable cluster with a CNI installed and the cnimatrix workload images
// reachable). $CNIMATRIX_CNI_NAMESPACE / $CNIMATRIX_CNI_SELECTOR name the
// CNI's pods (default: flannel's); $CNIMATRIX_CHECK_TIMEOUT overrides the
// per-wait timeout. The nodes are read from the cluster, each expected to be
// $CNIMATRIX_NODE_ARCH (default: this host's arch, as kind nodes are).
func realEnv(t *testing.T, ns string) *Env {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a real cluster")
	}
	path := os.Getenv("CNIMATRIX_KUBECONFIG")
	if path == "" {
		t.Skip("set CNIMATRIX_KUBECONFIG to a disposable cluster's kubeconfig")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	env := &Env{
		Client: cs, Config: cfg, Namespace: ns,
		NginxImage: "docker.io/cnimatrix/nginx:bookworm", ProbeImage: "docker.io/cnimatrix/probe:bookworm",
		CNINamespace: envOr("CNIMATRIX_CNI_NAMESPACE", "kube-flannel"), CNISelector: envOr("CNIMATRIX_CNI_SELECTOR", "app=flannel"),
		Timeout: 3 * time.Minute, Log: logx.New(testWriter{t}, true),
	}
	env.Nodes = realNodes(t, cs, envOr("CNIMATRIX_NODE_ARCH", runtime.GOARCH))
	if v := os.Getenv("CNIMATRIX_CHECK_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("CNIMATRIX_CHECK_TIMEOUT: %v", err)
		}
		env.Timeout = d
	}
	return env
}

// realNodes stands in for the provider's node list.
func realNodes(t *testing.T, cs kubernetes.Interface, arch string) []cluster.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []cluster.Node
	for _, n := range list.Items {
		role := cluster.Worker
		if _, cp := n.Labels["node-role.kubernetes.io/control-plane"]; cp {
			role = cluster.ControlPlane
		}
		out = append(out, cluster.Node{Name: n.Name, Role: role, Arch: arch})
	}
	return out
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestRealDefault(t *testing.T) {
	env := realEnv(t, "cnimatrix-checks-test")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	got := map[string]Result{}
	for _, r := range Run(ctx, env, Default()) {
		t.Logf("%s", r)
		got[r.Name] = r
		if !r.OK && !r.Skipped() {
			t.Errorf("%s failed: %s", r.Name, r.Err)
		}
	}
	n := len(env.Nodes)
	// Every node probes every other one: n*(n-1) pairs, each node a source.
	if n >= 2 {
		sources := map[string]bool{}
		for _, e := range got[NamePodToPodAcrossNodes].Evidence {
			sources[e.Source] = true
		}
		if ev := got[NamePodToPodAcrossNodes].Evidence; len(ev) != n*(n-1) || len(sources) != n {
			t.Errorf("pod-to-pod: %d probes from %d sources on %d nodes, want %d from %d", len(ev), len(sources), n, n*(n-1), n)
		}
	}
	if ev := got[NameNodeArch].Evidence; len(ev) != n {
		t.Errorf("node arch: %d evidence lines for %d nodes", len(ev), n)
	}
}

// TestRealNodeArchMismatch proves NodeArch can fail: told that one node was
// built for the other arch, it must say so for that node and only that one.
func TestRealNodeArchMismatch(t *testing.T) {
	env := realEnv(t, "cnimatrix-checks-arch")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	liar := env.Nodes[len(env.Nodes)-1].Name
	claim := "arm64"
	if env.Nodes[len(env.Nodes)-1].Arch == "arm64" {
		claim = "amd64"
	}
	env.Nodes[len(env.Nodes)-1].Arch = claim
	checks, err := ByName([]string{NameWorkloads, NameNodeArch})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Result{}
	for _, r := range Run(ctx, env, checks) {
		t.Logf("%s", r)
		got[r.Name] = r
	}
	if !got[NameWorkloads].OK {
		t.Fatalf("workloads: %s", got[NameWorkloads].Err)
	}
	r := got[NameNodeArch]
	if r.OK || r.Skipped() || !strings.Contains(r.Err, "node "+liar+": expected "+claim+" (the provider's arch)") {
		t.Fatalf("node arch with %s claimed %s: %s", liar, claim, r)
	}
	for _, e := range r.Evidence {
		if e.OK == (e.Target == "node "+liar) {
			t.Errorf("evidence %s", e)
		}
	}
}

// TestRealWrongTargetPort proves the Service checks can fail: with a
// targetPort nothing listens on, nginx pods are ready but the Service refuses.
func TestRealWrongTargetPort(t *testing.T) {
	env := realEnv(t, "cnimatrix-checks-badport")
	env.TargetPort = 8080
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	checks, err := ByName([]string{NameWorkloads, NamePodToPodAcrossNodes, NamePodToClusterIP, NameHostToNodePort})
	if err != nil {
		t.Fatal(err)
	}
	res := Run(ctx, env, checks)
	got := map[string]Result{}
	for _, r := range res {
		t.Logf("%s", r)
		got[r.Name] = r
	}
	if !got[NameWorkloads].OK {
		t.Fatalf("workloads: %s", got[NameWorkloads].Err)
	}
	for _, n := range []string{NamePodToClusterIP, NameHostToNodePort} {
		r := got[n]
		if r.OK || r.Skipped() {
			t.Errorf("%s passed with a wrong targetPort", n)
		}
		for _, e := range r.Evidence {
			if e.Attempts < sweepMaxFailures {
				t.Errorf("%s: refused sweep made %d requests, want >= %d", n, e.Attempts, sweepMaxFailures)
			}
		}
	}
	if r := got[NamePodToPodAcrossNodes]; !r.OK && !r.Skipped() {
		t.Errorf("pod-to-pod does not use the Service and should pass: %s", r.Err)
	}
}
