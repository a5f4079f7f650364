package checks

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ktypes "k8s.io/apimachinery/pkg/types"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
)

func calicoNodePod(name, ns, node string, ready bool, probe ...string) *corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	if len(probe) == 0 {
		probe = []string{"/bin/calico-node", "-bird-ready", "-felix-ready"}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: ktypes.UID("uid-" + slug(name)), Labels: map[string]string{"k8s-app": "calico-node"}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{
			Name: "calico-node", Image: "docker.io/calico/node:v3.32.1",
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: probe}}},
		}}},
		Status: corev1.PodStatus{
			Phase:             corev1.PodRunning,
			Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: st}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "calico-node", Ready: ready, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}},
		},
	}
}

func slug(s string) string { return strings.ReplaceAll(s, "/", "-") }

func TestCalicoNodeReadyPerNode(t *testing.T) {
	unready := calicoNodePod("calico-node-w1", "kube-system", "w1", false)
	probeEvent := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "e1", Namespace: "kube-system"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: unready.Name, UID: unready.UID},
		Type:           corev1.EventTypeWarning, Reason: "Unhealthy", Count: 5, LastTimestamp: metav1.Now(),
		Message: "Readiness probe failed: calico/node is not ready: BIRD is not ready: BGP not established with 172.18.0.3",
	}
	cs := fake.NewClientset(readyNode("cp", true), readyNode("w1", false), readyNode("w2", false),
		calicoNodePod("calico-node-cp", "kube-system", "cp", true), unready, probeEvent)
	env := &Env{Client: cs, Timeout: 500 * time.Millisecond}
	r := CalicoNodeReady{}.Run(context.Background(), env)
	t.Logf("%s", r)
	if r.OK || len(r.Evidence) != 3 {
		t.Fatalf("want a failure with one evidence per node: %s", r)
	}
	if !strings.HasPrefix(r.Err, "calico-node not ready: 2/3 failed") {
		t.Errorf("err %q", r.Err)
	}
	byNode := map[string]Evidence{}
	for _, e := range r.Evidence {
		byNode[e.Target] = e
	}
	if e := byNode["node cp"]; !e.OK || !strings.Contains(e.Detail, "pod kube-system/calico-node-cp Ready") || !strings.Contains(e.Detail, "felix-ready: could not ask") || !strings.Contains(e.Detail, "bird-ready: could not ask") {
		t.Errorf("cp: %+v", e)
	}
	if e := byNode["node w1"]; e.OK || !strings.Contains(e.Detail, "last readiness probe failure: Readiness probe failed: calico/node is not ready: BIRD is not ready: BGP not established with 172.18.0.3 (x5)") {
		t.Errorf("w1: %+v", e)
	}
	if e := byNode["node w2"]; e.OK || e.Detail != "no calico-node pod on this node (namespace kube-system)" {
		t.Errorf("w2: %+v", e)
	}

	// Operator install: found in calico-system without being told.
	cs = fake.NewClientset(readyNode("cp", true), calicoNodePod("calico-node-x", "calico-system", "cp", true, "calico-node", "-felix-ready"))
	r = CalicoNodeReady{}.Run(context.Background(), &Env{Client: cs, CNINamespace: "tigera-operator", Timeout: 2 * time.Second})
	if !r.OK || len(r.Evidence) != 1 || !strings.Contains(r.Evidence[0].Detail, "calico-system/calico-node-x") || strings.Contains(r.Evidence[0].Detail, "bird") {
		t.Errorf("operator install: %s", r)
	}

	r = CalicoNodeReady{}.Run(context.Background(), &Env{Client: fake.NewClientset(readyNode("cp", true)), Timeout: 300 * time.Millisecond})
	if r.OK || !strings.Contains(r.Err, "no pods labelled k8s-app=calico-node in calico-system, kube-system") {
		t.Errorf("no calico: %s", r)
	}
}

func TestCalicoNodePerNodeRollout(t *testing.T) {
	old := calicoNodePod("old", "kube-system", "w1", false)
	now := metav1.Now()
	old.DeletionTimestamp = &now
	per := calicoNodePerNode([]string{"w1", "cp"}, []corev1.Pod{*old, *calicoNodePod("new", "kube-system", "w1", true), *calicoNodePod("gone", "kube-system", "w9", true)})
	if len(per) != 2 || per[0].node != "cp" || per[0].ready != nil || per[1].ready == nil || per[1].ready.Name != "new" || len(per[1].pods) != 2 {
		t.Errorf("per node: %+v", per)
	}
	strays := calicoNodeStrays([]string{"w1", "cp"}, []corev1.Pod{*calicoNodePod("gone", "kube-system", "w9", true)})
	if len(strays) != 1 || strays[0].Name != "gone" {
		t.Errorf("strays: %v", strays)
	}
}

func TestHealthCommands(t *testing.T) {
	for _, tc := range []struct {
		probe []string
		names []string
		cmds  [][]string
	}{
		{[]string{"/bin/calico-node", "-bird-ready", "-felix-ready"}, []string{"bird-ready", "felix-ready"},
			[][]string{{"/bin/calico-node", "-bird-ready"}, {"/bin/calico-node", "-felix-ready"}}},
		{[]string{"/bin/calico-node", "-felix-ready"}, []string{"felix-ready"}, [][]string{{"/bin/calico-node", "-felix-ready"}}},
		{[]string{"calico", "component", "node", "health", "--bird-ready", "--felix-ready"}, []string{"bird-ready", "felix-ready"},
			[][]string{{"calico", "component", "node", "health", "--bird-ready"}, {"calico", "component", "node", "health", "--felix-ready"}}},
	} {
		c := &corev1.Container{ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: tc.probe}}}}
		names, cmds := healthCommands(c)
		if !slices.Equal(names, tc.names) || len(cmds) != len(tc.cmds) {
			t.Errorf("%v: %v %v", tc.probe, names, cmds)
			continue
		}
		for i := range cmds {
			if !slices.Equal(cmds[i], tc.cmds[i]) {
				t.Errorf("%v: cmd %d = %v, want %v", tc.probe, i, cmds[i], tc.cmds[i])
			}
		}
	}
	if n, c := healthCommands(&corev1.Container{ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readiness"}}}}); n != nil || c != nil {
		t.Errorf("http probe: %v %v", n, c)
	}
}

func kubeControllers(ns string, available int32) *appsv1.Deployment {
	one := int32(1)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "calico-kube-controllers", Namespace: ns, Generation: 1},
		Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "calico-kube-controllers"}},
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "calico-kube-controllers", Image: "docker.io/calico/kube-controllers:v3.32.1"}}}}},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 1, UpdatedReplicas: 1, AvailableReplicas: available, ReadyReplicas: available,
			Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: map[bool]corev1.ConditionStatus{true: corev1.ConditionTrue, false: corev1.ConditionFalse}[available > 0]}}},
	}
}

func TestCalicoKubeControllersReady(t *testing.T) {
	r := CalicoKubeControllersReady{}.Run(context.Background(), &Env{Client: fake.NewClientset(kubeControllers("kube-system", 1)), Timeout: 2 * time.Second})
	if !r.OK || len(r.Evidence) != 1 || !strings.Contains(r.Evidence[0].Detail, "1/1 available") || !strings.Contains(r.Evidence[0].Detail, "kube-controllers:v3.32.1") {
		t.Errorf("available: %s", r)
	}
	r = CalicoKubeControllersReady{}.Run(context.Background(), &Env{Client: fake.NewClientset(kubeControllers("calico-system", 0)), Timeout: 500 * time.Millisecond})
	if r.OK || !strings.Contains(r.Err, "deployment calico-system/calico-kube-controllers: 0/1 ready") {
		t.Errorf("unavailable: %s", r)
	}
	r = CalicoKubeControllersReady{}.Run(context.Background(), &Env{Client: fake.NewClientset(), CNINamespace: "kube-system", Timeout: 300 * time.Millisecond})
	if r.OK || !strings.Contains(r.Err, "no deployment calico-kube-controllers in kube-system, calico-system") {
		t.Errorf("missing: %s", r)
	}
}

func ippoolObj(apiVersion, name string, spec map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": apiVersion, "kind": "IPPool",
		"metadata": map[string]any{"name": name},
		"spec":     spec,
	}}
}

func dynClient(objs ...runtime.Object) *dynamicfake.FakeDynamicClient {
	kinds := map[schema.GroupVersionResource]string{}
	for _, gvr := range ipPoolResources {
		kinds[gvr] = "IPPoolList"
	}
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), kinds, objs...)
}

func TestIPPool(t *testing.T) {
	env := &Env{Client: fake.NewClientset(), Timeout: time.Second}
	vx := ippoolObj("crd.projectcalico.org/v1", "default-ipv4-ippool", map[string]any{"cidr": "10.244.0.0/16", "vxlanMode": "Always", "ipipMode": "Never", "blockSize": int64(26), "natOutgoing": true})
	legacy := ippoolObj("crd.projectcalico.org/v1", "default-ipv4-ippool", map[string]any{"cidr": "192.168.0.0/16", "ipip": map[string]any{"enabled": true, "mode": "always"}, "natOutgoing": true})
	v6 := ippoolObj("crd.projectcalico.org/v1", "default-ipv6-ippool", map[string]any{"cidr": "fd00:10:244::/64"})
	off := ippoolObj("crd.projectcalico.org/v1", "old", map[string]any{"cidr": "10.244.0.0/16", "vxlanMode": "Always", "disabled": true})
	for _, tc := range []struct {
		name    string
		pools   []runtime.Object
		cidr    string
		encap   string
		ok      bool
		errHas  []string
		evCount int
	}{
		{"vxlan matches", []runtime.Object{vx, v6}, "10.244.0.0/16", "VXLAN", true, nil, 2},
		{"any", []runtime.Object{vx}, "", "", true, nil, 1},
		{"cidr written unmasked", []runtime.Object{vx}, "10.244.1.0/16", "VXLAN", true, nil, 1},
		{"ipip asked, vxlan found", []runtime.Object{vx}, "10.244.0.0/16", "IPIP", false,
			[]string{"no IPPool with cidr 10.244.0.0/16, encapsulation IPIP (ipipMode Always, vxlanMode Never), enabled; pools found: ippool default-ipv4-ippool (crd.projectcalico.org/v1): cidr 10.244.0.0/16, ipipMode Never, vxlanMode Always, blockSize 26, natOutgoing true"}, 1},
		{"wrong cidr", []runtime.Object{legacy}, "10.244.0.0/16", "IPIP", false, []string{"cidr 192.168.0.0/16, ipipMode Always"}, 1},
		{"legacy ipip field", []runtime.Object{legacy}, "192.168.0.0/16", "IPIP", true, nil, 1},
		{"disabled pool", []runtime.Object{off}, "10.244.0.0/16", "VXLAN", false, []string{"DISABLED"}, 1},
		{"none", nil, "10.244.0.0/16", "VXLAN", false, []string{"no IPPool found after"}, 0},
	} {
		r := IPPool{ExpectedPodCIDR: tc.cidr, Encapsulation: tc.encap, Client: dynClient(tc.pools...), Wait: 300 * time.Millisecond}.Run(context.Background(), env)
		if r.OK != tc.ok || len(r.Evidence) != tc.evCount {
			t.Errorf("%s: %s", tc.name, r)
			continue
		}
		for _, want := range tc.errHas {
			if !strings.Contains(r.Err, want) {
				t.Errorf("%s: err %q lacks %q", tc.name, r.Err, want)
			}
		}
	}
	if r := (IPPool{Encapsulation: "Geneve", Client: dynClient()}).Run(context.Background(), env); r.OK || !strings.Contains(r.Err, "unknown encapsulation") {
		t.Errorf("bad encapsulation: %s", r)
	}
}

// nodeExec answers `ip -d link show dev X` from a table of devices, and
// counts the calls.
type nodeExec struct {
	mu      sync.Mutex
	devices map[string]string
	calls   int
}

func (n *nodeExec) Run(ctx context.Context, stdout, stderr io.Writer, argv ...string) error {
	n.mu.Lock()
	n.calls++
	n.mu.Unlock()
	dev := argv[len(argv)-1]
	out, ok := n.devices[dev]
	if !ok {
		_, _ = io.WriteString(stderr, `Device "`+dev+`" does not exist.`)
		return errors.New("exit status 1")
	}
	_, _ = io.WriteString(stdout, out)
	return nil
}

const flannelLink = `5: flannel.1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UNKNOWN mode DEFAULT group default 
    link/ether 6e:2c:1a:0b:55:0d brd ff:ff:ff:ff:ff:ff promiscuity 0  allmulti 0 minmtu 68 maxmtu 65535 
    vxlan id 1 local 172.18.0.3 dev eth0 srcport 0 0 dstport 8472 nolearning ttl auto ageing 300 udpcsum noudp6zerocsumtx noudp6zerocsumrx addrgenmode eui64 numtxqueues 1 numrxqueues 1 gso_max_size 65536 gso_max_segs 65535 
`

const tunl0Down = `2: tunl0@NONE: <NOARP> mtu 1480 qdisc noop state DOWN mode DEFAULT group default qlen 1000
    link/ipip 0.0.0.0 brd 0.0.0.0 promiscuity 0  allmulti 0 minmtu 0 maxmtu 0 
    ipip any remote any local any ttl inherit nopmtudisc addrgenmode eui64 numtxqueues 1 numrxqueues 1 gso_max_size 65536 gso_max_segs 65535 
`

func TestParseIPLink(t *testing.T) {
	l := parseIPLink(flannelLink)
	if l.name != "flannel.1" || l.kind != "vxlan" || l.mtu != "1450" || !slices.Contains(l.flags, "UP") ||
		l.details != "vxlan id 1 local 172.18.0.3 dev eth0 srcport 0 0 dstport 8472 nolearning ttl auto ageing 300 udpcsum noudp6zerocsumtx noudp6zerocsumrx" {
		t.Errorf("%+v", l)
	}
	l = parseIPLink(tunl0Down)
	if l.name != "tunl0" || l.kind != "ipip" || slices.Contains(l.flags, "UP") || l.state != "DOWN" {
		t.Errorf("%+v", l)
	}
}

func TestTunnelDevice(t *testing.T) {
	good := &nodeExec{devices: map[string]string{"flannel.1": flannelLink}}
	missing := &nodeExec{devices: map[string]string{}}
	env := &Env{Client: fake.NewClientset(), Timeout: time.Second, Nodes: []cluster.Node{{Name: "cp", Exec: good}, {Name: "w1", Exec: good}}}
	r := TunnelDevice{Device: "flannel.1"}.Run(context.Background(), env)
	if !r.OK || len(r.Evidence) != 2 || !strings.Contains(r.Evidence[1].Detail, "flannel.1 <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450") || r.Evidence[1].Source != "node w1" {
		t.Errorf("flannel.1: %s", r)
	}

	env.Nodes[1].Exec = missing
	r = TunnelDevice{Device: "flannel.1", Wait: 500 * time.Millisecond}.Run(context.Background(), env)
	if r.OK || !strings.Contains(r.Err, `1/2 failed: flannel.1: ip -d link show: Device "flannel.1" does not exist.`) {
		t.Errorf("missing on w1: %s", r)
	}
	if missing.calls < 2 {
		t.Errorf("a missing device was asked for %d times; it should be polled until the wait ends", missing.calls)
	}

	// From the encapsulation: IPIP wants tunl0, which here is down.
	down := &nodeExec{devices: map[string]string{"tunl0": tunl0Down}}
	env.Nodes = []cluster.Node{{Name: "cp", Exec: down}}
	r = TunnelDevice{Encapsulation: "IPIP", Wait: 300 * time.Millisecond}.Run(context.Background(), env)
	if r.OK || !strings.Contains(r.Err, "not UP") || !strings.Contains(r.Err, "encapsulation IPIP") {
		t.Errorf("tunl0 down: %s", r)
	}
	// A device of the wrong kind under the expected name.
	env.Nodes = []cluster.Node{{Name: "cp", Exec: &nodeExec{devices: map[string]string{"vxlan.calico": strings.Replace(tunl0Down, "<NOARP>", "<NOARP,UP,LOWER_UP>", 1)}}}}
	r = TunnelDevice{Encapsulation: "VXLAN", Wait: 300 * time.Millisecond}.Run(context.Background(), env)
	if r.OK || !strings.Contains(r.Err, `kind "ipip", want "vxlan"`) {
		t.Errorf("wrong kind: %s", r)
	}

	// From the pools: a VXLAN pool means vxlan.calico.
	vxPool := ippoolObj("crd.projectcalico.org/v1", "default-ipv4-ippool", map[string]any{"cidr": "10.244.0.0/16", "vxlanMode": "CrossSubnet"})
	calicoVX := strings.Replace(flannelLink, "flannel.1", "vxlan.calico", 1)
	env.Nodes = []cluster.Node{{Name: "cp", Exec: &nodeExec{devices: map[string]string{"vxlan.calico": calicoVX}}}}
	r = TunnelDevice{Client: dynClient(vxPool)}.Run(context.Background(), env)
	if !r.OK || len(r.Evidence) != 1 || r.Evidence[0].Target != "vxlan.calico" {
		t.Errorf("from pools: %s", r)
	}
	r = TunnelDevice{Encapsulation: "None"}.Run(context.Background(), env)
	if !r.Skipped() {
		t.Errorf("None: %s", r)
	}
	env.Nodes = []cluster.Node{{Name: "cp"}}
	r = TunnelDevice{Device: "flannel.1", Wait: 300 * time.Millisecond}.Run(context.Background(), env)
	if r.OK || !strings.Contains(r.Err, "no way to run commands") {
		t.Errorf("no exec: %s", r)
	}
}

func testCreatingPod(name, ns, node string, scheduled time.Time, reasons ...string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: ktypes.UID("uid-" + slug(name)), CreationTimestamp: metav1.NewTime(scheduled.Add(-time.Second))},
		Spec:       corev1.PodSpec{NodeName: node},
		Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(scheduled)},
		}},
	}
	for i, r := range reasons {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{Name: "c" + string(rune('0'+i)), State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: r}}})
	}
	return p
}

func TestNoPodStuckCreating(t *testing.T) {
	now := time.Now()
	stuck := testCreatingPod("nginx-abc", "cnimatrix-checks", "w1", now.Add(-5*time.Minute), "ContainerCreating")
	young := testCreatingPod("coredns-x", "kube-system", "cp", now.Add(-30*time.Second), "ContainerCreating")
	pull := testCreatingPod("pull", "default", "w1", now.Add(-10*time.Minute), "ImagePullBackOff")
	unscheduled := testCreatingPod("unsched", "default", "", now.Add(-10*time.Minute), "ContainerCreating")
	noSandbox := testCreatingPod("nosandbox", "default", "w1", now.Add(-3*time.Minute))
	noSandbox.Status.Conditions = append(noSandbox.Status.Conditions, corev1.PodCondition{Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionFalse})
	running := calicoNodePod("calico-node-cp", "kube-system", "cp", true)
	sandboxEvent := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "e1", Namespace: "cnimatrix-checks"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: stuck.Name, UID: stuck.UID},
		Type:           corev1.EventTypeWarning, Reason: "FailedCreatePodSandBox", Count: 12, LastTimestamp: metav1.NewTime(now.Add(-10 * time.Second)),
		Message: `Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network for sandbox "1f2e": plugin type="calico" failed (add): stat /var/lib/calico/nodename: no such file or directory`,
	}
	env := &Env{Client: fake.NewClientset(stuck, young, pull, unscheduled, noSandbox, running, sandboxEvent), Timeout: time.Second}
	r := NoPodStuckCreating{now: func() time.Time { return now }}.Run(context.Background(), env)
	t.Logf("%s", r)
	if r.OK || !strings.HasPrefix(r.Err, "2 pods stuck creating") {
		t.Fatalf("%s", r)
	}
	if !strings.Contains(r.Err, "pod cnimatrix-checks/nginx-abc@w1: creating for 5m0s (threshold 2m0s); latest event FailedCreatePodSandBox (x12)") ||
		!strings.Contains(r.Err, "stat /var/lib/calico/nodename: no such file or directory") {
		t.Errorf("err lacks the stuck pod and its event: %s", r.Err)
	}
	if !strings.Contains(r.Err, "pod default/nosandbox@w1: creating for 3m0s") {
		t.Errorf("err lacks the pod without a sandbox: %s", r.Err)
	}
	for _, notStuck := range []string{"pull", "unsched", "coredns-x", "calico-node-cp"} {
		if strings.Contains(r.Err, notStuck) {
			t.Errorf("%s reported stuck: %s", notStuck, r.Err)
		}
	}

	r = NoPodStuckCreating{Threshold: 10 * time.Minute, now: func() time.Time { return now }}.Run(context.Background(), env)
	if !r.OK || !strings.Contains(r.Evidence[len(r.Evidence)-1].Detail, "6 pods, none creating for longer than 10m0s") {
		t.Errorf("threshold 10m: %s", r)
	}
}

func TestNetworkPolicyObjects(t *testing.T) {
	deny, allow := denyPolicy("ns"), allowPolicy("ns")
	if len(deny.Spec.Ingress) != 0 || !slices.Equal(deny.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) || deny.Spec.PodSelector.MatchLabels[appLabel] != nginxApp {
		t.Errorf("deny: %+v", deny.Spec)
	}
	if len(allow.Spec.Ingress) != 1 || allow.Spec.Ingress[0].From[0].PodSelector.MatchLabels[appLabel] != probeApp || allow.Spec.Ingress[0].Ports[0].Port.IntValue() != 80 {
		t.Errorf("allow: %+v", allow.Spec)
	}
	d := &deployed{probe: testPod("probe-w1", probeApp, probePrimary, "w1", "10.0.1.2", true)}
	d.nginx = []corev1.Pod{*testPod("nginx-a", nginxApp, "", "w1", "10.0.1.3", true), *testPod("nginx-b", nginxApp, "", "cp", "10.0.0.3", true)}
	if got := policyTarget(d); got.Name != "nginx-b" {
		t.Errorf("target %s, want the nginx pod on another node", got.Name)
	}
}

func TestCalicoSuite(t *testing.T) {
	var names []string
	for _, c := range Calico() {
		names = append(names, c.Name())
	}
	want := []string{NameCalicoNodeReady, NameCalicoKubeControllersReady, NameIPPool, NameTunnelDevice, NameNoPodStuckCreating, NameNetworkPolicy}
	if !slices.Equal(names, want) {
		t.Errorf("Calico() = %v, want %v", names, want)
	}
	for _, c := range Default() {
		if slices.Contains(want, c.Name()) {
			t.Errorf("%s is in Default()", c.Name())
		}
	}
	if deps := (NetworkPolicy{}).DependsOn(); !slices.Equal(deps, []string{NameWorkloads}) {
		t.Errorf("NetworkPolicy depends on %v", deps)
	}
	cs := CalicoFor("10.244.0.0/16", "VXLAN")
	if p := cs[2].(IPPool); p.ExpectedPodCIDR != "10.244.0.0/16" || p.Encapsulation != "VXLAN" {
		t.Errorf("CalicoFor: %+v", p)
	}
}
