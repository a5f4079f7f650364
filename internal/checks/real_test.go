package checks

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/cnimatrix/cnimatrix/internal/logx"
)

// realEnv is an Env for the cluster named by $CNIMATRIX_KUBECONFIG (a
// disposable cluster with a CNI installed and the cnimatrix workload images
// reachable). $CNIMATRIX_CNI_NAMESPACE / $CNIMATRIX_CNI_SELECTOR name the
// CNI's pods (default: flannel's); $CNIMATRIX_CHECK_TIMEOUT overrides the
// per-wait timeout.
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
	if v := os.Getenv("CNIMATRIX_CHECK_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("CNIMATRIX_CHECK_TIMEOUT: %v", err)
		}
		env.Timeout = d
	}
	return env
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
	for _, r := range Run(ctx, env, Default()) {
		t.Logf("%s", r)
		if !r.OK && !r.Skipped() {
			t.Errorf("%s failed: %s", r.Name, r.Err)
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
