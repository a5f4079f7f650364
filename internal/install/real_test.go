package install

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/cnimatrix/cnimatrix/internal/logx"
)

// realCluster returns a config for the cluster named by $CNIMATRIX_KUBECONFIG
// (a kubeconfig file of a disposable cluster, e.g. one `cnimatrix run --keep`
// left). These tests change the cluster; they never run against one by chance.
func realCluster(t *testing.T) *rest.Config {
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
	return cfg
}

const realManifest = `
apiVersion: demo.cnimatrix.io/v1
kind: Widget
metadata: {name: w1}
spec: {size: 3}
---
apiVersion: v1
kind: Namespace
metadata: {name: cnimatrix-install-test}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.demo.cnimatrix.io}
spec:
  group: demo.cnimatrix.io
  names: {kind: Widget, plural: widgets, singular: widget}
  scope: Cluster
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: cnimatrix-install-test}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}]
      containers: [{name: web, image: docker.io/cnimatrix/nginx:bookworm}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: broken, namespace: cnimatrix-install-test}
spec:
  selector: {matchLabels: {app: broken}}
  template:
    metadata: {labels: {app: broken}}
    spec:
      tolerations: [{operator: Exists}]
      containers: [{name: agent, image: docker.io/cnimatrix/nope:v1}]
`

func TestRealApplyWaitDelete(t *testing.T) {
	cfg := realCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	log := logx.New(testWriter{t}, true)
	objs, err := ParseManifest([]byte(realManifest))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := Delete(context.Background(), cfg, objs); err != nil {
			t.Errorf("delete: %v", err)
		}
	})
	t0 := time.Now()
	// Twice: the second apply must be a no-op, not a conflict.
	for i := 0; i < 2; i++ {
		if err := Apply(ctx, cfg, objs, ApplyOptions{Log: log}); err != nil {
			t.Fatalf("apply %d: %v", i+1, err)
		}
	}
	t.Logf("applied twice in %s", time.Since(t0))
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w, err := dyn.Resource(schema.GroupVersionResource{Group: "demo.cnimatrix.io", Version: "v1", Resource: "widgets"}).Get(ctx, "w1", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("custom resource applied before its CRD in the file: %v", err)
	}
	if mf := w.GetManagedFields(); len(mf) == 0 || mf[0].Manager != DefaultFieldManager {
		t.Errorf("managed fields %+v", mf)
	}

	wctx, wcancel := context.WithTimeout(ctx, 90*time.Second)
	defer wcancel()
	t0 = time.Now()
	err = WaitReady(wctx, cfg, objs, ApplyOptions{Log: log})
	t.Logf("WaitReady after %s:\n%v", time.Since(t0), err)
	var nre *NotReadyError
	if !errors.As(err, &nre) {
		t.Fatalf("want *NotReadyError, got %T %v", err, err)
	}
	if len(nre.Workloads) != 1 || nre.Workloads[0].Name != "broken" {
		t.Fatalf("not-ready workloads: %v", nre.Workloads)
	}
	if msg := err.Error(); !strings.Contains(msg, "daemonset cnimatrix-install-test/broken: 0/") ||
		!(strings.Contains(msg, "ImagePullBackOff") || strings.Contains(msg, "ErrImagePull")) || !strings.Contains(msg, "docker.io/cnimatrix/nope:v1") {
		t.Errorf("error does not show the pull failure: %s", msg)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
