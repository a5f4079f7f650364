package checks

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
)

const testNS = "t-ns"

func apiNode(name, arch string, controlPlane bool) *corev1.Node {
	n := readyNode(name, true)
	n.Status.NodeInfo.Architecture = arch
	n.Status.NodeInfo.KernelVersion = "6.12.0-" + arch
	if controlPlane {
		n.Labels = map[string]string{"node-role.kubernetes.io/control-plane": ""}
	}
	return n
}

// testPod is a pod as the API shows it once the kubelet has run it (or not).
func testPod(name, app, role, node, ip string, ready bool) *corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	lbl := map[string]string{appLabel: app}
	if role != "" {
		lbl[probeRoleLabel] = role
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS, Labels: lbl},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}},
	}
}

func testService() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: nginxName, Namespace: testNS},
		Spec:       corev1.ServiceSpec{ClusterIP: "10.96.0.7", Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt(80), NodePort: 30080}}},
	}
}

func TestProbePodsOnePerNode(t *testing.T) {
	env := &Env{Namespace: testNS, ProbeImage: "docker.io/cnimatrix/probe:bookworm"}
	nodes := []corev1.Node{*apiNode("w2", "arm64", false), *apiNode("cp", "amd64", true), *apiNode("w1", "arm64", false)}
	prov := []cluster.Node{{Name: "cp", Role: cluster.ControlPlane}, {Name: "w2", Role: cluster.Worker}, {Name: "w1", Role: cluster.Worker}}
	primary := pickProbeNode(prov, nodes)
	var got []string
	for _, p := range probePods(env, nodes, primary) {
		got = append(got, p.Name+"@"+p.Spec.NodeName+"="+p.Labels[probeRoleLabel])
		if len(p.Spec.Tolerations) == 0 || p.Spec.Tolerations[0].Key != "node-role.kubernetes.io/control-plane" {
			t.Errorf("%s: tolerations %+v", p.Name, p.Spec.Tolerations)
		}
		if p.Labels[appLabel] != probeApp || p.Spec.Containers[0].Image != env.ProbeImage {
			t.Errorf("%s: %+v", p.Name, p)
		}
	}
	if want := "probe-cp@cp=peer probe-w1@w1=peer probe-w2@w2=primary"; strings.Join(got, " ") != want {
		t.Errorf("probe pods\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	long := strings.Repeat("n", 250)
	if n := probePodName(long, 3); n != "probe-3" {
		t.Errorf("long node name gives %q", n)
	}
}

// Workloads on a cluster with no kubelets: it must create a probe pod on
// every node, then fail naming the pods that never became ready.
func TestWorkloadsCreatesProbePerNode(t *testing.T) {
	cs := fake.NewClientset(apiNode("cp", "amd64", true), apiNode("w1", "arm64", false))
	env := &Env{Client: cs, Namespace: testNS, Timeout: 600 * time.Millisecond,
		NginxImage: "nginx", ProbeImage: "probe",
		Nodes: []cluster.Node{{Name: "cp", Role: cluster.ControlPlane, Arch: "amd64"}, {Name: "w1", Role: cluster.Worker, Arch: "arm64"}}}
	r := Workloads{}.Run(context.Background(), env)
	t.Logf("%s", r)
	if r.OK {
		t.Fatal("passed without a kubelet")
	}
	pods, err := cs.CoreV1().Pods(testNS).List(context.Background(), metav1.ListOptions{LabelSelector: appLabel + "=" + probeApp})
	if err != nil {
		t.Fatal(err)
	}
	sortPods(pods.Items)
	var got []string
	for _, p := range pods.Items {
		got = append(got, p.Name+"@"+p.Spec.NodeName+"="+p.Labels[probeRoleLabel])
	}
	if want := "probe-cp@cp=peer probe-w1@w1=primary"; strings.Join(got, " ") != want {
		t.Errorf("probe pods %s, want %s", strings.Join(got, " "), want)
	}
	probeEv := 0
	for _, e := range r.Evidence {
		if strings.Contains(e.Target, "probe-") {
			probeEv++
			if e.OK {
				t.Errorf("evidence says a never-run pod is ready: %s", e)
			}
		}
	}
	if probeEv != 2 {
		t.Errorf("%d probe evidence lines, want 2", probeEv)
	}
}

func crossNodeCluster(objs ...runtime.Object) *Env {
	return &Env{Client: fake.NewClientset(objs...), Namespace: testNS, Timeout: 2 * time.Second}
}

func TestLoadDeployedAndPairs(t *testing.T) {
	env := crossNodeCluster(
		testPod("probe-cp", probeApp, probePeer, "cp", "10.244.0.5", true),
		testPod("probe-w1", probeApp, probePrimary, "w1", "10.244.1.5", true),
		testPod("probe-w2", probeApp, probePeer, "w2", "10.244.2.5", false),
		testPod("nginx-b", nginxApp, "", "w1", "10.244.1.4", true),
		testPod("nginx-a", nginxApp, "", "cp", "10.244.0.4", true),
		testPod("nginx-c", nginxApp, "", "w2", "10.244.2.4", true),
		testService(),
	)
	d, err := loadDeployed(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	if d.probe.Name != "probe-w1" || d.source() != "pod probe-w1@w1 (10.244.1.5)" || len(d.probes) != 3 {
		t.Fatalf("primary %s, %d probes", d.source(), len(d.probes))
	}
	if p := probeOn(d.probes, "cp"); p == nil || p.Name != "probe-cp" {
		t.Errorf("probeOn(cp) = %v", p)
	}
	if probeOn(d.probes, "w9") != nil {
		t.Error("probeOn a node without probe")
	}
	var got []string
	for _, pr := range crossNodePairs(d.probes, d.nginx) {
		got = append(got, pr.from.Spec.NodeName+">"+pr.to.Spec.NodeName)
	}
	// Every ordered pair of distinct nodes, both directions.
	if want := "cp>w1 cp>w2 w1>cp w1>w2 w2>cp w2>w1"; strings.Join(got, " ") != want {
		t.Errorf("pairs %s, want %s", strings.Join(got, " "), want)
	}

	// Without a primary probe the single-source checks cannot run.
	env = crossNodeCluster(testPod("probe-cp", probeApp, probePeer, "cp", "10.244.0.5", true), testPod("nginx-a", nginxApp, "", "cp", "10.244.0.4", true), testService())
	if _, err := loadDeployed(context.Background(), env); err == nil || !strings.Contains(err.Error(), "no primary probe pod") {
		t.Errorf("no primary: %v", err)
	}
}

func TestPodToPodFromEveryNode(t *testing.T) {
	// The probe on cp went away after Workloads; nginx runs on w1 only, so
	// w1's probe has no cross-node target and cp's is the only source.
	env := crossNodeCluster(
		testPod("probe-cp", probeApp, probePeer, "cp", "10.244.0.5", false),
		testPod("probe-w1", probeApp, probePrimary, "w1", "10.244.1.5", true),
		testPod("nginx-b", nginxApp, "", "w1", "10.244.1.4", true),
		testService(),
	)
	r := PodToPodAcrossNodes{}.Run(context.Background(), env)
	t.Logf("%s", r)
	if r.OK || len(r.Evidence) != 1 {
		t.Fatalf("%s", r)
	}
	e := r.Evidence[0]
	if e.Source != "pod probe-cp@cp (10.244.0.5)" || e.Target != "pod nginx-b@w1 http://10.244.1.4:80/" || !strings.HasPrefix(e.Detail, "probe pod not ready") {
		t.Errorf("evidence %s", e)
	}

	// One node: nothing crosses nodes, the check does not apply.
	env = crossNodeCluster(testPod("probe-w1", probeApp, probePrimary, "w1", "10.244.1.5", true), testPod("nginx-b", nginxApp, "", "w1", "10.244.1.4", true), testService())
	if r := (PodToPodAcrossNodes{}).Run(context.Background(), env); !r.Skipped() || !strings.Contains(r.Err, "needs 2 nodes") {
		t.Errorf("single node: %s", r)
	}
}

func TestArchVerdict(t *testing.T) {
	for _, tc := range []struct {
		name    string
		a       archReport
		ok      bool
		detail  string
		problem string
	}{
		{"native arm64", archReport{Want: "arm64", NodeInfo: "arm64", Kernel: "6.1.0-50-arm64", Pod: "probe-w1", Uname: "aarch64"}, true,
			"nodeInfo.architecture arm64, uname -m aarch64 in pod probe-w1 (kernel 6.1.0-50-arm64)", ""},
		{"native amd64", archReport{Want: "amd64", NodeInfo: "amd64", Kernel: "6.8.0", Pod: "probe-cp", Uname: "x86_64"}, true,
			"nodeInfo.architecture amd64, uname -m x86_64 in pod probe-cp (kernel 6.8.0)", ""},
		{"provider says arm64, node is amd64", archReport{Want: "arm64", NodeInfo: "amd64", Kernel: "6.8.0", Pod: "probe-w1", Uname: "x86_64"}, false,
			"nodeInfo.architecture amd64, uname -m x86_64 in pod probe-w1 (kernel 6.8.0); expected arm64",
			"expected arm64 (the provider's arch), got nodeInfo.architecture amd64, uname -m x86_64 (amd64) in pod probe-w1"},
		{"foreign image under binfmt", archReport{Want: "arm64", NodeInfo: "arm64", Kernel: "6.1.0", Pod: "probe-w1", Uname: "x86_64"}, false,
			"nodeInfo.architecture arm64, uname -m x86_64 in pod probe-w1 (kernel 6.1.0); expected arm64",
			"expected arm64 (the provider's arch), got uname -m x86_64 (amd64) in pod probe-w1"},
		{"no provider arch, agree", archReport{NodeInfo: "amd64", Kernel: "6.8.0", Pod: "probe-cp", Uname: "x86_64"}, true,
			"nodeInfo.architecture amd64, uname -m x86_64 in pod probe-cp (kernel 6.8.0)", ""},
		{"no provider arch, disagree", archReport{NodeInfo: "amd64", Kernel: "6.8.0", Pod: "probe-cp", Uname: "aarch64"}, false,
			"nodeInfo.architecture amd64, uname -m aarch64 in pod probe-cp (kernel 6.8.0); expected amd64",
			"expected amd64 (the kubelet's arch), got uname -m aarch64 (arm64) in pod probe-cp"},
		{"no probe pod", archReport{Want: "arm64", NodeInfo: "arm64", Kernel: "6.1.0", Err: "no probe pod on this node"}, false,
			"nodeInfo.architecture arm64 (kernel 6.1.0), uname -m unread: no probe pod on this node; expected arm64",
			"uname -m unread: no probe pod on this node"},
		{"wrong node and no probe pod", archReport{Want: "arm64", NodeInfo: "amd64", Kernel: "6.8.0", Err: "no probe pod on this node"}, false,
			"nodeInfo.architecture amd64 (kernel 6.8.0), uname -m unread: no probe pod on this node; expected arm64",
			"expected arm64 (the provider's arch), got nodeInfo.architecture amd64, uname -m unread: no probe pod on this node"},
		{"unknown machine", archReport{Want: "arm64", NodeInfo: "arm64", Pod: "probe-w1", Uname: "mips"}, false,
			"nodeInfo.architecture arm64, uname -m mips in pod probe-w1 (kernel (none)); expected arm64",
			`expected arm64 (the provider's arch), got uname -m "mips", no known architecture`},
		{"nothing to expect", archReport{Pod: "probe-w1", Uname: "aarch64"}, false,
			"nodeInfo.architecture (none), uname -m aarch64 in pod probe-w1 (kernel (none))",
			"no arch to expect: the provider stated none and the kubelet reported none"},
	} {
		ok, detail, problem := tc.a.verdict()
		if ok != tc.ok || detail != tc.detail || problem != tc.problem {
			t.Errorf("%s:\n got %v %q %q\nwant %v %q %q", tc.name, ok, detail, problem, tc.ok, tc.detail, tc.problem)
		}
	}
	for m, want := range map[string]string{"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "riscv64": "riscv64", "sparc": ""} {
		if got := goArch(m); got != want {
			t.Errorf("goArch(%s) = %q, want %q", m, got, want)
		}
	}
}

// NodeArch without the probes it needs: a node without a probe pod, one
// whose probe is not ready and one the API server never heard of all fail,
// each named in the error.
func TestNodeArchMissingProbes(t *testing.T) {
	env := crossNodeCluster(
		apiNode("cp", "amd64", true), apiNode("w1", "arm64", false),
		testPod("probe-w1", probeApp, probePrimary, "w1", "10.244.1.5", false),
	)
	env.Nodes = []cluster.Node{{Name: "cp", Arch: "amd64"}, {Name: "w1", Arch: "arm64"}, {Name: "w2", Arch: "arm64"}}
	r := NodeArch{}.Run(context.Background(), env)
	t.Logf("%s", r)
	if r.OK || len(r.Evidence) != 3 {
		t.Fatalf("%s", r)
	}
	for _, want := range []string{"node cp: uname -m unread: no probe pod on this node",
		"node w1: uname -m unread: probe pod probe-w1 not ready",
		"node w2: expected arm64 (the provider's arch), got nodeInfo.architecture (none), uname -m unread: node not registered with the API server"} {
		if !strings.Contains(r.Err, want) {
			t.Errorf("error lacks %q", want)
		}
	}
	for _, e := range r.Evidence {
		if e.OK || e.Source != "api" || !strings.HasPrefix(e.Target, "node ") {
			t.Errorf("evidence %s", e)
		}
	}
}

func TestDigArgvAsksTheServerGiven(t *testing.T) {
	if got := strings.Join(digArgv("nginx.ns.svc.cluster.local", "A"), " "); strings.Contains(got, "@") {
		t.Errorf("without a server dig must use the pod's resolver: %s", got)
	}
	got := digArgv("nginx.ns.svc.cluster.local", "A", "10.244.1.3")
	if n := len(got); got[n-3] != "@10.244.1.3" || got[n-2] != "nginx.ns.svc.cluster.local" || got[n-1] != "A" {
		t.Errorf("dig argv %q", got)
	}
}
