package checks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
	"github.com/cnimatrix/cnimatrix/internal/logx"
)

// stub is a check with a fixed outcome, for Run's bookkeeping.
type stub struct {
	name string
	deps []string
	ok   bool
	ran  *[]string
}

func (s stub) Name() string        { return s.name }
func (s stub) DependsOn() []string { return s.deps }
func (s stub) Run(ctx context.Context, env *Env) Result {
	*s.ran = append(*s.ran, s.name)
	if s.ok {
		return Result{OK: true}
	}
	return Result{Err: s.name + " broke"}
}

func TestRunSkipsDependents(t *testing.T) {
	var ran []string
	ns := "t-ns"
	cs := fake.NewClientset(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}})
	var log bytes.Buffer
	env := &Env{Client: cs, Namespace: ns, Timeout: 2 * time.Second, Log: logx.New(&log, false)}
	res := Run(context.Background(), env, []Check{
		stub{name: "A", ok: true, ran: &ran},
		stub{name: "B", ok: false, ran: &ran},
		stub{name: "C", deps: []string{"A", nameSetup}, ok: true, ran: &ran},
		stub{name: "D", deps: []string{"B"}, ok: true, ran: &ran},
		stub{name: "E", deps: []string{"D"}, ok: true, ran: &ran},
		stub{name: "F", deps: []string{"not-in-list"}, ok: true, ran: &ran},
	})
	if got := strings.Join(ran, ","); got != "A,B,C,F" {
		t.Errorf("ran %s", got)
	}
	var got []string
	for _, r := range res {
		got = append(got, r.Name+"="+map[bool]string{true: "ok", false: r.Err}[r.OK])
	}
	want := "A=ok B=B broke C=ok D=skipped: B failed E=skipped: D failed F=ok"
	if strings.Join(got, " ") != want {
		t.Errorf("results\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	if !res[3].Skipped() || res[1].Skipped() {
		t.Errorf("Skipped() wrong: %v %v", res[3].Skipped(), res[1].Skipped())
	}
	// Setup created the namespace for C; teardown deleted it.
	if _, err := cs.CoreV1().Namespaces().Get(context.Background(), ns, metav1.GetOptions{}); err == nil {
		t.Errorf("namespace %s still exists after Run", ns)
	}
	if !strings.Contains(log.String(), "teardown namespace t-ns") {
		t.Errorf("log lacks teardown:\n%s", log.String())
	}
}

func TestRunSetupFailureSkips(t *testing.T) {
	var ran []string
	// No default ServiceAccount ever appears in a fake cluster: Setup times out.
	env := &Env{Client: fake.NewClientset(), Namespace: "x", Timeout: 400 * time.Millisecond}
	res := Run(context.Background(), env, []Check{stub{name: "W", deps: []string{nameSetup}, ok: true, ran: &ran}})
	if len(ran) != 0 || len(res) != 2 || res[0].Name != nameSetup || res[1].Err != "skipped: Setup failed" {
		t.Fatalf("ran %v results %+v", ran, res)
	}
	if !strings.Contains(res[0].Err, "default service account") {
		t.Errorf("setup error %q", res[0].Err)
	}
}

func TestRunCancelledContext(t *testing.T) {
	var ran []string
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := Run(ctx, &Env{Client: fake.NewClientset()}, []Check{stub{name: "A", ok: true, ran: &ran}})
	if len(ran) != 0 || res[0].Err != "skipped: context canceled" {
		t.Fatalf("ran %v res %+v", ran, res)
	}
}

func TestDefaultOrderAndDeps(t *testing.T) {
	var names []string
	for _, c := range Default() {
		names = append(names, c.Name())
	}
	want := "NodesReady CNIPodsReady CoreDNSReady Workloads NodeArch PodToPodAcrossNodes PodToClusterIP PodToServiceDNS HostToNodePort"
	if strings.Join(names, " ") != want {
		t.Fatalf("Default() = %s", strings.Join(names, " "))
	}
	// Every dependency runs before its dependent.
	seen := map[string]bool{nameSetup: true}
	for _, c := range Default() {
		if d, ok := c.(Dependent); ok {
			for _, dep := range d.DependsOn() {
				if !seen[dep] {
					t.Errorf("%s depends on %s, which runs later or never", c.Name(), dep)
				}
			}
		}
		seen[c.Name()] = true
	}
	if _, err := ByName([]string{"PodToClusterIP", "Nope"}); err == nil || !strings.Contains(err.Error(), "unknown checks Nope") {
		t.Errorf("ByName error %v", err)
	}
}

func TestEvidenceString(t *testing.T) {
	e := Evidence{Check: "PodToClusterIP", Source: "pod probe@w1 (10.244.1.4)", Target: "service nginx http://10.96.41.7:80/",
		OK: true, Detail: "HTTP 200, served by nginx-abc: nginx-abc", Latency: 2345 * time.Microsecond, Attempts: 1}
	want := "ok   PodToClusterIP pod probe@w1 (10.244.1.4) -> service nginx http://10.96.41.7:80/: HTTP 200, served by nginx-abc: nginx-abc [2.3ms, 1 attempt]"
	if e.String() != want {
		t.Errorf("\n got %s\nwant %s", e, want)
	}
	r := Result{Name: "PodToClusterIP", Err: "1/1 failed: x", Duration: 3210 * time.Millisecond, Evidence: []Evidence{
		{Check: "PodToClusterIP", Source: "host", Target: "t", Detail: "curl: (7) Failed to connect", Latency: 1500 * time.Millisecond, Attempts: 4},
	}}
	want = "FAIL PodToClusterIP (3.2s): 1/1 failed: x\n  FAIL PodToClusterIP host -> t: curl: (7) Failed to connect [1.5s, 4 attempts]"
	if r.String() != want {
		t.Errorf("\n got %s\nwant %s", r, want)
	}
	if s := skipped("X", "Workloads failed", nil).String(); !strings.HasPrefix(s, "SKIP X") || !strings.Contains(s, "skipped: Workloads failed") {
		t.Errorf("skip string %q", s)
	}
}

func TestParseCurl(t *testing.T) {
	ok := parseCurl(execOutput{Stdout: "<html><body><h1>nginx-7d9-abc</h1>\n</body></html>\n" + curlMarker + "200 0.001234>>", Took: time.Second}, 35*time.Second)
	if ok.Code != 200 || ok.Err != "" || ok.Latency != 1234*time.Microsecond || !strings.Contains(ok.Body, "nginx-7d9-abc") || strings.Contains(ok.Body, "cnimatrix-curl") {
		t.Errorf("ok: %+v", ok)
	}
	refused := parseCurl(execOutput{Stdout: curlMarker + "000 0.000377>>", Stderr: "curl: (7) Failed to connect to 10.96.0.5 port 80 after 0 ms: Couldn't connect to server\n", Code: 7}, 35*time.Second)
	if refused.Code != 0 || refused.Err != "curl: (7) Failed to connect to 10.96.0.5 port 80 after 0 ms: Couldn't connect to server" {
		t.Errorf("refused: %+v", refused)
	}
	missing := parseCurl(execOutput{Stderr: `exec: "curl": executable file not found in $PATH`, Code: 127}, 35*time.Second)
	if !strings.HasPrefix(missing.Err, "probe image cannot run curl (exit 127)") {
		t.Errorf("missing: %+v", missing)
	}
	transport := parseCurl(execOutput{Err: errors.New("exec in pod x/y: context deadline exceeded"), Took: 35 * time.Second}, 35*time.Second)
	if transport.Err != "harness: exec in pod x/y: context deadline exceeded (after 35s; exec deadline 35s, curl's own --max-time 5s)" || !transport.Harness {
		t.Errorf("transport: %+v", transport)
	}
	if refused.Harness || missing.Harness {
		t.Error("a request that failed is not the harness's failure")
	}
}

func TestParseDig(t *testing.T) {
	out := `;; Got answer:
;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 4242
;; flags: qr aa rd; QUERY: 1, ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 1
;; WARNING: recursion requested but not available

;; OPT PSEUDOSECTION:
; EDNS: version: 0, flags:; udp: 1232
;; ANSWER SECTION:
nginx.cnimatrix-checks.svc.cluster.local. 30 IN	A 10.96.41.7

;; Query time: 3 msec
;; SERVER: 10.96.0.10#53(10.96.0.10) (UDP)
;; WHEN: Sat Nov 28 10:00:00 UTC 2026
;; MSG SIZE  rcvd: 125
`
	d := parseDig(execOutput{Stdout: out}, 40*time.Second)
	if d.Status != "NOERROR" || len(d.Answers) != 1 || d.Answers[0] != "10.96.41.7" || d.Server != "10.96.0.10#53(10.96.0.10)" || d.Latency != 3*time.Millisecond || d.Err != "" {
		t.Errorf("%+v", d)
	}
	nx := parseDig(execOutput{Stdout: ";; ->>HEADER<<- opcode: QUERY, status: NXDOMAIN, id: 1\n"}, 40*time.Second)
	if nx.Status != "NXDOMAIN" || len(nx.Answers) != 0 || nx.Err != "" {
		t.Errorf("%+v", nx)
	}
	to := parseDig(execOutput{Stdout: ";; communications error to 10.96.0.10#53: timed out\n;; no servers could be reached\n", Code: 9}, 40*time.Second)
	if !strings.HasPrefix(to.Err, "dig exited 9: no DNS server answered: ;; communications error") {
		t.Errorf("%+v", to)
	}
}

func TestRetryBoundedAndTransientOnly(t *testing.T) {
	n := 0
	if got := retry(context.Background(), probeAttempts, func(context.Context) bool { n++; return false }); got != 1 || n != 1 {
		t.Errorf("non-transient: %d attempts", got)
	}
	t0 := time.Now()
	if got := retry(context.Background(), probeAttempts, func(context.Context) bool { return true }); got != probeAttempts {
		t.Errorf("transient: %d attempts, want %d", got, probeAttempts)
	}
	if d := time.Since(t0); d < 3*time.Second || d > 6*time.Second {
		t.Errorf("backoff total %s, want ~3.5s", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	t0 = time.Now()
	if got := retry(ctx, probeAttempts, func(context.Context) bool { return true }); got != 1 || time.Since(t0) > time.Second {
		t.Errorf("ctx: %d attempts in %s", got, time.Since(t0))
	}
}

// TestHTTPGetReal exercises the host-side probe against real sockets: a
// served page, a refused port (retried, then reported) and an HTTP error
// (answered, so not retried).
func TestHTTPGetReal(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.Error(w, "nope", http.StatusNotFound)
			return
		}
		w.Write([]byte("<html><body>served by nginx-abc</body></html>"))
	}))
	defer srv.Close()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	ctx := context.Background()

	ok := httpGet(ctx, client, srv.URL+"/", probeAttempts)
	pods := []corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Name: "nginx-abc"}}}
	if ok.Code != 200 || ok.Attempts != 1 || servedBy(ok.Body, pods) != "nginx-abc" {
		t.Errorf("ok: %+v", ok)
	}
	if d := detailHTTP(ok, "nginx-abc", ""); d != "HTTP 200, served by nginx-abc: served by nginx-abc" {
		t.Errorf("detail %q", d)
	}
	nf := httpGet(ctx, client, srv.URL+"/missing", probeAttempts)
	if nf.Code != 404 || nf.Attempts != 1 || nf.Err != "" {
		t.Errorf("404: %+v", nf)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	refused := httpGet(ctx, client, "http://"+addr+"/", probeAttempts)
	if refused.Attempts != probeAttempts || !strings.Contains(refused.Err, "connection refused") {
		t.Errorf("refused: %+v", refused)
	}
}

func TestWorkloadObjects(t *testing.T) {
	env := &Env{Namespace: "ns", NginxImage: "docker.io/cnimatrix/nginx:bookworm", ProbeImage: "docker.io/cnimatrix/probe:bookworm", TargetPort: 8080}
	d := nginxDeployment(env, 3)
	if *d.Spec.Replicas != 3 {
		t.Errorf("replicas %d", *d.Spec.Replicas)
	}
	aa := d.Spec.Template.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution
	if len(aa) != 1 || aa[0].TopologyKey != "kubernetes.io/hostname" || aa[0].LabelSelector.MatchLabels[appLabel] != nginxApp {
		t.Errorf("anti-affinity %+v", aa)
	}
	c := d.Spec.Template.Spec.Containers[0]
	if c.Image != env.NginxImage || c.ReadinessProbe.HTTPGet.Path != "/" || c.ReadinessProbe.HTTPGet.Port.IntValue() != 80 {
		t.Errorf("container %+v", c)
	}
	tol := d.Spec.Template.Spec.Tolerations
	if len(tol) == 0 || tol[0].Key != "node-role.kubernetes.io/control-plane" {
		t.Errorf("tolerations %+v", tol)
	}
	s := nginxService(env)
	if s.Spec.Type != corev1.ServiceTypeNodePort || s.Spec.Ports[0].Port != 80 || s.Spec.Ports[0].TargetPort.IntValue() != 8080 {
		t.Errorf("service %+v", s.Spec)
	}
	p := probePod(env, "probe-w2", "w2", probePrimary)
	if p.Spec.NodeName != "w2" || strings.Join(p.Spec.Containers[0].Command, " ") != "sleep infinity" || p.Spec.Containers[0].Image != env.ProbeImage ||
		p.Labels[appLabel] != probeApp || p.Labels[probeRoleLabel] != probePrimary {
		t.Errorf("probe %+v", p)
	}

	prov := []cluster.Node{{Name: "c-control-plane", Role: cluster.ControlPlane}, {Name: "c-worker2", Role: cluster.Worker}, {Name: "c-worker", Role: cluster.Worker}}
	if n := pickProbeNode(prov, nil); n != "c-worker2" {
		t.Errorf("probe node from provider %s", n)
	}
	api := []corev1.Node{
		{ObjectMeta: metav1.ObjectMeta{Name: "b", Labels: map[string]string{"node-role.kubernetes.io/control-plane": ""}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "c"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "a", Labels: map[string]string{"node-role.kubernetes.io/control-plane": ""}}},
	}
	if n := pickProbeNode(nil, api); n != "c" {
		t.Errorf("probe node from api %s", n)
	}
	if n := pickProbeNode(nil, api[:1]); n != "b" {
		t.Errorf("single control-plane %s", n)
	}
}

func TestReadyEndpoints(t *testing.T) {
	f := false
	tr := true
	got := readyEndpoints([]discoveryv1.EndpointSlice{
		{Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &tr}}, {Addresses: []string{"10.0.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: &f}}}},
		{Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}}, {Addresses: []string{"10.0.0.3"}}}},
	})
	if got != 2 {
		t.Errorf("ready endpoints %d, want 2", got)
	}
}

func readyNode(name string, ready bool) *corev1.Node {
	st := corev1.ConditionTrue
	reason, msg := "KubeletReady", "kubelet is posting ready status"
	if !ready {
		st, reason, msg = corev1.ConditionFalse, "KubeletNotReady", "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized"
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st, Reason: reason, Message: msg}},
			NodeInfo:   corev1.NodeSystemInfo{OperatingSystem: "linux", Architecture: "arm64", KubeletVersion: "v1.37.2", KernelVersion: "6.1.0-50-arm64", ContainerRuntimeVersion: "containerd://2.4.2"},
		},
	}
}

func TestNodesReady(t *testing.T) {
	env := &Env{Client: fake.NewClientset(readyNode("cp", true), readyNode("w1", true)), Timeout: 2 * time.Second,
		Nodes: []cluster.Node{{Name: "cp"}, {Name: "w1"}}}
	r := NodesReady{}.Run(context.Background(), env)
	if !r.OK || len(r.Evidence) != 2 || r.Evidence[1].Detail != "Ready=True, linux/arm64 kubelet v1.37.2, kernel 6.1.0-50-arm64, containerd://2.4.2" {
		t.Fatalf("%s", r)
	}

	env = &Env{Client: fake.NewClientset(readyNode("cp", true), readyNode("w1", false)), Timeout: 500 * time.Millisecond,
		Nodes: []cluster.Node{{Name: "cp"}, {Name: "w1"}, {Name: "w2"}}}
	r = NodesReady{}.Run(context.Background(), env)
	if r.OK || !strings.Contains(r.Err, "w1: Ready=False: KubeletNotReady container runtime network not ready") ||
		!strings.Contains(r.Err, "w2: created by the provider but not registered") {
		t.Fatalf("%s", r)
	}
}

func TestCNIPodsReadyEvidence(t *testing.T) {
	lbl := map[string]string{"app": "flannel"}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-flannel-ds", Namespace: "kube-flannel", Generation: 1},
		Spec:       appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: lbl}, Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: lbl}}},
		Status:     appsv1.DaemonSetStatus{ObservedGeneration: 1, DesiredNumberScheduled: 2, UpdatedNumberScheduled: 2, NumberReady: 1},
	}
	ready := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-flannel-ds-a", Namespace: "kube-flannel", Labels: lbl},
		Spec:       corev1.PodSpec{NodeName: "cp", Containers: []corev1.Container{{Name: "kube-flannel", Image: "docker.io/cnimatrix/flannel:v0.28.10"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
	crash := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-flannel-ds-b", Namespace: "kube-flannel", Labels: lbl},
		Spec:       corev1.PodSpec{NodeName: "w1"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{
			Name: "kube-flannel", RestartCount: 3,
			State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 40s restarting failed container"}},
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 1, Message: "failed to find interface eth9"}},
		}}},
	}
	env := &Env{Client: fake.NewClientset(ds, ready, crash), CNINamespace: "kube-flannel", CNISelector: "app=flannel", Timeout: 500 * time.Millisecond}
	r := CNIPodsReady{}.Run(context.Background(), env)
	t.Logf("%s", r)
	if r.OK || len(r.Evidence) != 2 {
		t.Fatalf("%s", r)
	}
	if !strings.HasPrefix(r.Err, "daemonset kube-flannel/kube-flannel-ds: 1/2 ready; pod kube-flannel-ds-b on node w1: container kube-flannel waiting CrashLoopBackOff") ||
		!strings.Contains(r.Err, "last exit 1 Error: failed to find interface eth9") {
		t.Errorf("err %q", r.Err)
	}
	if !r.Evidence[0].OK || r.Evidence[0].Detail != "Ready, kube-flannel=docker.io/cnimatrix/flannel:v0.28.10" || r.Evidence[1].OK {
		t.Errorf("evidence %+v", r.Evidence)
	}
	if (CNIPodsReady{}).Run(context.Background(), &Env{Client: fake.NewClientset()}).Err != "env.CNINamespace is not set" {
		t.Errorf("missing namespace not reported")
	}
}

func TestSummarizeDedupes(t *testing.T) {
	ev := []Evidence{
		{Target: "svc", Detail: "curl: (7) refused"},
		{Target: "svc", OK: true, Detail: "HTTP 200"},
		{Target: "svc", Detail: "curl: (7) refused"},
		{Target: "other", Detail: "curl: (28) timeout"},
	}
	r := summarize(ev)
	if r.OK || r.Err != "3/4 failed: svc: curl: (7) refused (x2); other: curl: (28) timeout" {
		t.Fatalf("%q", r.Err)
	}
	if !summarize(ev[1:2]).OK || summarize(nil).OK {
		t.Fatal("ok/empty wrong")
	}
	if r.Infra {
		t.Error("request failures made the check infra")
	}
}

// A check whose every failure is the harness's own exec (after its retries)
// could not judge: Infra, so the cell is infra-error, not fail connectivity.
// One real failure beside them keeps it a verdict.
func TestSummarizeHarnessFaultIsInfra(t *testing.T) {
	exec := Evidence{Target: "pod nginx@vm", Detail: "harness: exec in pod x/probe: context deadline exceeded", Harness: true}
	r := summarize([]Evidence{{Target: "pod nginx@cp", OK: true}, exec})
	if r.OK || !r.Infra || !strings.HasPrefix(r.Err, "the harness could not reach its probe pods (1/2)") {
		t.Errorf("harness only: %+v", r)
	}
	r = summarize([]Evidence{exec, {Target: "pod nginx@cp", Detail: "curl: (7) refused"}})
	if r.OK || r.Infra {
		t.Errorf("harness and a refusal: %+v", r)
	}
}

func TestSweep(t *testing.T) {
	settle, bo := sweepSettle, sweepBackoff
	defer func() { sweepSettle, sweepBackoff = settle, bo }()
	sweepSettle = 0
	sweepBackoff = func() wait.Backoff { return wait.Backoff{Duration: time.Millisecond} }
	backends := []corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Name: "nginx-a"}, Spec: corev1.PodSpec{NodeName: "cp"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "nginx-b"}, Spec: corev1.PodSpec{NodeName: "w1"}},
	}
	// Healthy: the proxy alternates; both are seen by the second request.
	n := 0
	s := runSweep(context.Background(), backends, func(context.Context) httpProbe {
		n++
		return httpProbe{Code: 200, Body: []string{"nginx-a\n", "nginx-b\n"}[n%2], Latency: time.Millisecond}
	})
	r := summarize(s.evidence("PodToClusterIP", "probe", "svc"))
	if !r.OK || s.requests != 2 || r.Evidence[0].Attempts != 2 || r.Evidence[1].Attempts != 1 {
		t.Fatalf("healthy: %s", r)
	}

	// nginx-b's node is unreachable: every request routed there times out.
	// A retry would have landed on nginx-a and passed; the sweep fails.
	n = 0
	s = runSweep(context.Background(), backends, func(context.Context) httpProbe {
		n++
		if n%2 == 0 {
			return httpProbe{Err: fmt.Sprintf("curl: (28) Failed to connect to 10.96.0.9 port 80 after %d ms: Timeout was reached", 3000+n%3)}
		}
		return httpProbe{Code: 200, Body: "nginx-a\n"}
	})
	r = summarize(s.evidence("PodToClusterIP", "probe", "svc"))
	t.Logf("%s", r)
	if r.OK || s.requests != 8 || s.failedRequests() != sweepMaxFailures {
		t.Fatalf("broken backend: requests %d failed %d\n%s", s.requests, s.failedRequests(), r)
	}
	want := "1/2 failed: svc -> backend nginx-b@w1: never answered in 8 requests; 4 failed: curl: (28) Failed to connect to 10.96.0.9 port 80 after … ms: Timeout was reached (x4)"
	if r.Err != want {
		t.Errorf("\n got %s\nwant %s", r.Err, want)
	}

	// A body naming no backend is a failure, not an answer.
	s = runSweep(context.Background(), backends[:1], func(context.Context) httpProbe { return httpProbe{Code: 200, Body: "Welcome to nginx!"} })
	if r := summarize(s.evidence("c", "s", "t")); r.OK || !strings.Contains(r.Err, "body names no nginx pod") {
		t.Errorf("stray body: %s", r)
	}
}

// A backend a node's proxy has not programmed yet is not seen in the first
// round; a later round within sweepSettle sees it. One never programmed
// fails once sweepSettle has passed.
func TestSweepWaitsForALateEndpoint(t *testing.T) {
	settle, bo := sweepSettle, sweepBackoff
	defer func() { sweepSettle, sweepBackoff = settle, bo }()
	sweepSettle = 300 * time.Millisecond
	sweepBackoff = func() wait.Backoff { return wait.Backoff{Duration: 20 * time.Millisecond} }
	backends := []corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Name: "nginx-a"}}, {ObjectMeta: metav1.ObjectMeta{Name: "nginx-b"}}}
	t0 := time.Now()
	n := 0
	s := runSweep(context.Background(), backends, func(context.Context) httpProbe {
		n++
		if time.Since(t0) > 100*time.Millisecond && n%2 == 0 {
			return httpProbe{Code: 200, Body: "nginx-b"}
		}
		return httpProbe{Code: 200, Body: "nginx-a"}
	})
	if r := summarize(s.evidence("c", "s", "t")); !r.OK || s.requests <= 2*sweepPerBackend {
		t.Fatalf("late endpoint: %d requests: %s", s.requests, r)
	}
	s = runSweep(context.Background(), backends, func(context.Context) httpProbe { return httpProbe{Code: 200, Body: "nginx-a"} })
	r := summarize(s.evidence("c", "s", "t"))
	if r.OK || !strings.Contains(r.Err, "nginx-b") || time.Since(t0) < sweepSettle {
		t.Fatalf("never programmed: %s", r)
	}
	t.Logf("%s", r)
}

// Refusals right after setup (kube-proxy not yet programmed) must not end a
// sweep before sweepSettle: the Service answers a moment later.
func TestSweepSettles(t *testing.T) {
	settle, bo := sweepSettle, sweepBackoff
	defer func() { sweepSettle, sweepBackoff = settle, bo }()
	sweepSettle = 300 * time.Millisecond
	sweepBackoff = func() wait.Backoff { return wait.Backoff{Duration: 20 * time.Millisecond} }
	backends := []corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Name: "nginx-a"}}}
	t0 := time.Now()
	s := runSweep(context.Background(), backends, func(context.Context) httpProbe {
		if time.Since(t0) < 200*time.Millisecond {
			return httpProbe{Err: "curl: (7) Failed to connect to 10.96.0.9 port 80 after 0 ms: Couldn't connect to server"}
		}
		return httpProbe{Code: 200, Body: "nginx-a"}
	})
	r := summarize(s.evidence("c", "s", "t"))
	if !r.OK || s.failedRequests() <= sweepMaxFailures {
		t.Fatalf("failed %d: %s", s.failedRequests(), r)
	}
	t.Logf("%s", r)
}
