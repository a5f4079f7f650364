package calico

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
)

func installationOf(t *testing.T, objs []*Object) *Object {
	t.Helper()
	var found *Object
	for _, o := range objs {
		if o.GetKind() == "Installation" {
			if found != nil {
				t.Fatal("two Installations")
			}
			found = o
		}
	}
	if found == nil {
		t.Fatal("no Installation")
	}
	return found
}

func TestConfigureOperatorEditsTheInstallation(t *testing.T) {
	objs := load(t, "tigera-operator-v3.28-shaped.yaml")
	n := len(objs)
	out, err := ConfigureFor(objs, Options{Install: InstallOperator, PodCIDR: "10.244.0.0/16", Encapsulation: VXLAN, MTU: 1400, Registry: "quay.io"})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != n {
		t.Fatalf("%d objects, want the file's %d", len(out), n)
	}
	inst := installationOf(t, out)
	pool, _ := firstPool(inst)
	if pool["cidr"] != "10.244.0.0/16" || pool["encapsulation"] != "VXLAN" {
		t.Errorf("pool %v", pool)
	}
	// What the harness does not set stays as custom-resources.yaml has it.
	if pool["blockSize"] != int64(26) || pool["natOutgoing"] != "Enabled" || pool["name"] != "default-ipv4-ippool" {
		t.Errorf("pool lost upstream fields: %v", pool)
	}
	if mtu, _, _ := unstructured.NestedInt64(inst.Object, "spec", "calicoNetwork", "mtu"); mtu != 1400 {
		t.Errorf("mtu %d", mtu)
	}
	if r, _, _ := unstructured.NestedString(inst.Object, "spec", "registry"); r != "quay.io/" {
		t.Errorf("registry %q", r)
	}
}

func TestConfigureOperatorKeepsTheFilesEncapsulationUnlessAsked(t *testing.T) {
	objs := load(t, "tigera-operator-v3.28-shaped.yaml")
	if _, err := ConfigureOperator(objs, Options{Install: InstallOperator, PodCIDR: "10.244.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	pool, _ := firstPool(installationOf(t, objs))
	if pool["encapsulation"] != "VXLANCrossSubnet" || pool["cidr"] != "10.244.0.0/16" {
		t.Errorf("pool %v", pool)
	}
}

func TestConfigureOperatorRendersAMissingInstallation(t *testing.T) {
	var objs []*Object
	for _, o := range load(t, "tigera-operator-v3.28-shaped.yaml") {
		if o.GetKind() != "Installation" {
			objs = append(objs, o)
		}
	}
	out, err := ConfigureOperator(objs, Options{Install: InstallOperator, PodCIDR: "10.244.0.0/16"})
	if err != nil {
		t.Fatal(err)
	}
	inst := installationOf(t, out)
	pool, _ := firstPool(inst)
	if inst.GetName() != "default" || pool["encapsulation"] != "VXLANCrossSubnet" || pool["cidr"] != "10.244.0.0/16" {
		t.Errorf("rendered %v", inst.Object)
	}
}

func TestInstallMethodMismatch(t *testing.T) {
	if _, err := ConfigureFor(load(t, "calico-v3.28-shaped.yaml"), Options{Install: InstallOperator, PodCIDR: "10.244.0.0/16"}); err == nil || !strings.Contains(err.Error(), "no tigera-operator Deployment") {
		t.Errorf("calico.yaml as an operator install: %v", err)
	}
	if _, err := ConfigureFor(load(t, "tigera-operator-v3.28-shaped.yaml"), Options{PodCIDR: "10.244.0.0/16"}); err == nil || !strings.Contains(err.Error(), "set cni.calico.install: operator") {
		t.Errorf("tigera-operator.yaml as a manifest install: %v", err)
	}
	if _, err := ConfigureFor(load(t, "tigera-operator-v3.28-shaped.yaml"), Options{Install: InstallOperator, PodCIDR: "10.244.0.1/16"}); err == nil || !strings.Contains(err.Error(), "pod CIDR") {
		t.Errorf("bad CIDR: %v", err)
	}
}

func tigeraStatus(conds ...map[string]any) *unstructured.Unstructured {
	var cs []any
	for _, c := range conds {
		cs = append(cs, c)
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "operator.tigera.io/v1", "kind": "TigeraStatus",
		"metadata": map[string]any{"name": "calico"},
		"status":   map[string]any{"conditions": cs},
	}}
}

func fakeDynamic(objs ...runtime.Object) *dynfake.FakeDynamicClient {
	return dynfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{tigeraStatusGVR: "TigeraStatusList"}, objs...)
}

func readyWorkloads() *fake.Clientset {
	one := int32(1)
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "calico-node", Namespace: OperatorNamespace, Generation: 1},
		Status: appsv1.DaemonSetStatus{ObservedGeneration: 1, DesiredNumberScheduled: 2, CurrentNumberScheduled: 2, UpdatedNumberScheduled: 2, NumberReady: 2, NumberAvailable: 2}}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "calico-kube-controllers", Namespace: OperatorNamespace, Generation: 1},
		Spec:   appsv1.DeploymentSpec{Replicas: &one},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 1, UpdatedReplicas: 1, ReadyReplicas: 1, AvailableReplicas: 1}}
	return fake.NewSimpleClientset(ds, dep)
}

func TestWaitOperator(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ok := tigeraStatus(map[string]any{"type": "Available", "status": "True"}, map[string]any{"type": "Progressing", "status": "False"}, map[string]any{"type": "Degraded", "status": "False"})
	if err := WaitOperator(ctx, fakeDynamic(ok), readyWorkloads(), nil); err != nil {
		t.Fatalf("available and ready: %v", err)
	}

	// Degraded: the wait ends with what the operator said.
	dctx, dcancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer dcancel()
	bad := tigeraStatus(map[string]any{"type": "Available", "status": "False"}, map[string]any{"type": "Degraded", "status": "True", "reason": "ResourceNotReady", "message": "Waiting for Installation to be ready"})
	err := WaitOperator(dctx, fakeDynamic(bad), readyWorkloads(), nil)
	var oe *OperatorError
	if !errors.As(err, &oe) || oe.Workloads != nil || !strings.Contains(oe.Status, "Available=False Degraded=True (ResourceNotReady: Waiting for Installation to be ready)") {
		t.Errorf("degraded: %v", err)
	}

	// No TigeraStatus at all: the operator never reconciled.
	nctx, ncancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer ncancel()
	err = WaitOperator(nctx, fakeDynamic(), readyWorkloads(), nil)
	if !errors.As(err, &oe) || !strings.Contains(oe.Status, "not reported yet") {
		t.Errorf("never reported: %v", err)
	}
}
