package calico

import (
	"context"
	"os"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/cnimatrix/cnimatrix/internal/install"
	"github.com/cnimatrix/cnimatrix/internal/logx"
)

// TestOperatorInstallOnARealCluster drives the operator install against the
// API server of a disposable cluster ($CNIMATRIX_KUBECONFIG, e.g. one that
// `cnimatrix run scenarios/offline-flannel.yaml --keep` left): the
// operator-shaped manifest is configured and applied (CRDs established
// first), the Installation read back as the API server stored it, and
// WaitOperator waits for the TigeraStatus and the workloads. No operator
// image can be pulled here, so the test does the operator's part itself:
// the operator's container runs the harness's nginx image, and the test
// creates calico-system's workloads (nginx too) and reports the status.
// What this cannot show is the real operator reconciling.
func TestOperatorInstallOnARealCluster(t *testing.T) {
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
	client := kubernetes.NewForConfigOrDie(cfg)
	dyn := dynamic.NewForConfigOrDie(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	log := logx.New(os.Stderr, true)

	objs := load(t, "tigera-operator-v3.28-shaped.yaml")
	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			c := install.Containers(o)[0]
			c["image"] = "docker.io/cnimatrix/nginx:bookworm"
			delete(c, "command")
			_ = unstructured.SetNestedField(o.Object, false, "spec", "template", "spec", "hostNetwork")
		}
	}
	objs, err = ConfigureOperator(objs, Options{Install: InstallOperator, PodCIDR: "10.244.0.0/16", Encapsulation: VXLAN, Registry: "quay.io"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer dcancel()
		_ = install.Delete(dctx, cfg, objs)
		_ = client.CoreV1().Namespaces().Delete(dctx, OperatorNamespace, metav1.DeleteOptions{})
		_ = install.WaitDeleted(dctx, cfg, objs)
	})
	t0 := time.Now()
	if err := install.Apply(ctx, cfg, objs, install.ApplyOptions{Log: log}); err != nil {
		t.Fatal(err)
	}
	t.Logf("applied %d objects in %s", len(objs), time.Since(t0).Round(time.Millisecond))

	inst, err := dyn.Resource(schema.GroupVersionResource{Group: operatorGroup, Version: "v1", Resource: "installations"}).Get(ctx, "default", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pool, _ := firstPool(inst)
	reg, _, _ := unstructured.NestedString(inst.Object, "spec", "registry")
	if pool["cidr"] != "10.244.0.0/16" || pool["encapsulation"] != "VXLAN" || pool["blockSize"] != int64(26) || reg != "quay.io/" {
		t.Errorf("stored Installation: pool %v registry %q", pool, reg)
	}
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	if err := install.WaitReady(wctx, cfg, objs, install.ApplyOptions{Log: log}); err != nil {
		t.Fatalf("operator deployment: %v", err)
	}
	wcancel()

	// Before the operator reported anything, the wait says so.
	sctx, scancel := context.WithTimeout(ctx, 3*time.Second)
	err = WaitOperator(sctx, dyn, client, log)
	scancel()
	if err == nil {
		t.Fatal("WaitOperator passed with no TigeraStatus")
	}
	t.Logf("no status yet: %v", err)

	done := make(chan error, 1)
	t1 := time.Now()
	go func() { done <- WaitOperator(ctx, dyn, client, log) }()
	actAsOperator(ctx, t, client, dyn)
	if err := <-done; err != nil {
		t.Fatalf("WaitOperator: %v", err)
	}
	t.Logf("operator install ready %s after the status was reported", time.Since(t1).Round(time.Millisecond))
}

// actAsOperator does what tigera-operator does for an Installation, in
// the small: calico-system with calico-node and calico-kube-controllers,
// then TigeraStatus calico Available.
func actAsOperator(ctx context.Context, t *testing.T, client kubernetes.Interface, dyn dynamic.Interface) {
	t.Helper()
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: OperatorNamespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := func(app string) corev1.PodTemplateSpec {
		return corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"k8s-app": app}},
			Spec: corev1.PodSpec{
				Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
				Containers:  []corev1.Container{{Name: app, Image: "docker.io/cnimatrix/nginx:bookworm"}},
			},
		}
	}
	sel := func(app string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": app}}
	}
	if _, err := client.AppsV1().DaemonSets(OperatorNamespace).Create(ctx, &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "calico-node"},
		Spec: appsv1.DaemonSetSpec{Selector: sel("calico-node"), Template: pod("calico-node")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.AppsV1().Deployments(OperatorNamespace).Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "calico-kube-controllers"},
		Spec: appsv1.DeploymentSpec{Selector: sel("calico-kube-controllers"), Template: pod("calico-kube-controllers")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ts := tigeraStatus(map[string]any{"type": "Available", "status": "True"}, map[string]any{"type": "Progressing", "status": "False"}, map[string]any{"type": "Degraded", "status": "False"})
	status := ts.Object["status"]
	delete(ts.Object, "status")
	created, err := dyn.Resource(tigeraStatusGVR).Create(ctx, ts, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Object["status"] = status
	if _, err := dyn.Resource(tigeraStatusGVR).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}
