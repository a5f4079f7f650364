package apicompat

import (
	"strings"
	"testing"

	"github.com/cnimatrix/cnimatrix/internal/install"
)

// Shaped like Calico v3.1's kubeadm calico.yaml (extensions/v1beta1
// workloads, rbac v1beta1) with a v1beta1 CRD as v3.8's kdd-crds had;
// written for this test.
const calicoV31Shaped = `
kind: ConfigMap
apiVersion: v1
metadata: {name: calico-config, namespace: kube-system}
---
apiVersion: extensions/v1beta1
kind: DaemonSet
metadata: {name: calico-node, namespace: kube-system}
spec:
  template:
    spec:
      containers: [{name: calico-node, image: quay.io/calico/node:v3.1.7}]
---
apiVersion: extensions/v1beta1
kind: Deployment
metadata: {name: calico-kube-controllers, namespace: kube-system}
spec:
  template:
    spec:
      containers: [{name: calico-kube-controllers, image: quay.io/calico/kube-controllers:v3.1.7}]
---
apiVersion: rbac.authorization.k8s.io/v1beta1
kind: ClusterRole
metadata: {name: calico-cni-plugin}
rules: []
---
apiVersion: apiextensions.k8s.io/v1beta1
kind: CustomResourceDefinition
metadata: {name: ippools.crd.projectcalico.org}
spec:
  group: crd.projectcalico.org
  version: v1
  scope: Cluster
  names: {kind: IPPool, plural: ippools, singular: ippool}
---
apiVersion: crd.projectcalico.org/v1
kind: IPPool
metadata: {name: default-ipv4-ippool}
spec: {cidr: 192.168.0.0/16}
`

func TestCheckCalicoV31Shaped(t *testing.T) {
	objs, err := install.ParseManifest([]byte(calicoV31Shaped))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Check(objs, "v1.37.2")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, p := range got {
		lines = append(lines, p.String())
	}
	want := []string{
		"extensions/v1beta1 DaemonSet kube-system/calico-node: removed in Kubernetes v1.16 (use apps/v1)",
		"extensions/v1beta1 Deployment kube-system/calico-kube-controllers: removed in Kubernetes v1.16 (use apps/v1)",
		"rbac.authorization.k8s.io/v1beta1 ClusterRole calico-cni-plugin: removed in Kubernetes v1.22 (use rbac.authorization.k8s.io/v1)",
		"apiextensions.k8s.io/v1beta1 CustomResourceDefinition ippools.crd.projectcalico.org: removed in Kubernetes v1.22 (use apiextensions.k8s.io/v1)",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems on v1.37.2:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}

	// The Kubernetes the manifests were written for accepts every object;
	// v1.16 to v1.21 refuse the workloads only.
	for k8s, n := range map[string]int{"v1.10": 0, "v1.15.12": 0, "v1.16.0": 2, "v1.21": 2, "v1.22.0": 4, "v1.37": 4} {
		got, err := Check(objs, k8s)
		if err != nil || len(got) != n {
			t.Errorf("Check(%s) = %d problems, %v; want %d", k8s, len(got), err, n)
		}
	}
	if _, err := Check(objs, "latest"); err == nil {
		t.Error("Check accepted Kubernetes version \"latest\"")
	}

	used := Used(objs)
	if d := Diff(used, []API{
		{"apiextensions.k8s.io/v1beta1", "CustomResourceDefinition"},
		{"extensions/v1beta1", "DaemonSet"}, {"extensions/v1beta1", "Deployment"},
		{"rbac.authorization.k8s.io/v1beta1", "ClusterRole"},
	}); d != "" {
		t.Errorf("Used = %v: %s", used, d)
	}
}

func TestLookup(t *testing.T) {
	for _, c := range []struct {
		apiVersion, kind, removed, use string
	}{
		{"extensions/v1beta1", "DaemonSet", "v1.16", "apps/v1"},
		{"apps/v1beta2", "DaemonSet", "v1.16", "apps/v1"},
		{"extensions/v1beta1", "NetworkPolicy", "v1.16", "networking.k8s.io/v1"},
		{"extensions/v1beta1", "Ingress", "v1.22", "networking.k8s.io/v1"},
		{"scheduling.k8s.io/v1beta1", "PriorityClass", "v1.22", "scheduling.k8s.io/v1"},
		{"policy/v1beta1", "PodDisruptionBudget", "v1.25", "policy/v1"},
		{"policy/v1beta1", "PodSecurityPolicy", "v1.25", ""},
		{"batch/v1beta1", "CronJob", "v1.25", "batch/v1"},
		{"autoscaling/v2beta2", "HorizontalPodAutoscaler", "v1.26", "autoscaling/v2"},
		{"flowcontrol.apiserver.k8s.io/v1beta3", "FlowSchema", "v1.32", "flowcontrol.apiserver.k8s.io/v1"},
		// A kind the table does not name, of a group/version removed whole.
		{"extensions/v1beta1", "SomethingElse", "v1.22", ""},
	} {
		r, ok := Lookup(c.apiVersion, c.kind)
		if !ok || r.Removed != c.removed || r.Use != c.use {
			t.Errorf("Lookup(%s, %s) = %+v, %v; want removed %s, use %q", c.apiVersion, c.kind, r, ok, c.removed, c.use)
		}
	}
	for _, a := range []API{{"apps/v1", "DaemonSet"}, {"v1", "ConfigMap"}, {"policy/v1", "PodDisruptionBudget"},
		{"crd.projectcalico.org/v1", "IPPool"}, {"storage.k8s.io/v1beta1", "Unknown"}} {
		if r, ok := Lookup(a.APIVersion, a.Kind); ok {
			t.Errorf("Lookup(%s) = %+v: it is still served", a, r)
		}
	}
}

func TestDiff(t *testing.T) {
	got := []API{{"extensions/v1beta1", "DaemonSet"}}
	want := []API{{"apiextensions.k8s.io/v1beta1", "CustomResourceDefinition"}}
	d := Diff(got, want)
	for _, s := range []string{"manifest also uses extensions/v1beta1 DaemonSet (removed in v1.16)",
		"manifest does not use apiextensions.k8s.io/v1beta1 CustomResourceDefinition"} {
		if !strings.Contains(d, s) {
			t.Errorf("Diff = %q, want it to say %q", d, s)
		}
	}
	if d := Diff(want, want); d != "" {
		t.Errorf("Diff of equal lists = %q", d)
	}
}
