package install

import (
	"os"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func refs(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, Ref(o))
	}
	return out
}

func TestParseManifestMultiDoc(t *testing.T) {
	data, err := os.ReadFile("testdata/cni.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := ParseManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(refs(objs), ", ")
	want := "Namespace kube-demo, DaemonSet kube-demo/demo-ds, IPPool default-pool, " +
		"CustomResourceDefinition ippools.example.cnimatrix.io, ServiceAccount kube-demo/demo, Deployment kube-demo/demo-controller"
	if got != want {
		t.Fatalf("objects:\n got %s\nwant %s", got, want)
	}
	// Integers must be int64 for unstructured accessors (and for apply).
	port, found, err := unstructured.NestedSlice(objs[1].Object, "spec", "template", "spec", "containers")
	if err != nil || !found {
		t.Fatalf("containers: %v %v", found, err)
	}
	p := port[0].(map[string]any)["ports"].([]any)[0].(map[string]any)["containerPort"]
	if _, ok := p.(int64); !ok {
		t.Errorf("containerPort is %T, want int64", p)
	}
	r, found, err := unstructured.NestedInt64(objs[5].Object, "spec", "replicas")
	if err != nil || !found || r != 2 {
		t.Errorf("replicas = %d %v %v", r, found, err)
	}
}

func TestParseManifestOrdering(t *testing.T) {
	data, err := os.ReadFile("testdata/cni.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := ParseManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	crds, nss, rest := applyOrder(objs)
	if got := strings.Join(refs(crds), ","); got != "CustomResourceDefinition ippools.example.cnimatrix.io" {
		t.Errorf("crds = %s", got)
	}
	if got := strings.Join(refs(nss), ","); got != "Namespace kube-demo" {
		t.Errorf("namespaces = %s", got)
	}
	if got := strings.Join(refs(rest), ","); got != "DaemonSet kube-demo/demo-ds,IPPool default-pool,ServiceAccount kube-demo/demo,Deployment kube-demo/demo-controller" {
		t.Errorf("rest = %s", got)
	}
	if got := strings.Join(refs(deleteOrder(objs)), ","); got != "Deployment kube-demo/demo-controller,ServiceAccount kube-demo/demo,IPPool default-pool,DaemonSet kube-demo/demo-ds,Namespace kube-demo,CustomResourceDefinition ippools.example.cnimatrix.io" {
		t.Errorf("delete order = %s", got)
	}
	ws := Workloads(objs)
	if len(ws) != 2 || ws[0].String() != "daemonset kube-demo/demo-ds" || ws[1].String() != "deployment kube-demo/demo-controller" {
		t.Errorf("workloads = %v", ws)
	}
}

func TestParseManifestErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{
			name: "syntax error reported at file line",
			in:   "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n# c\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n   bad: indent\n",
			want: "manifest document 2 (line 5): yaml: line 10: mapping values are not allowed",
		},
		{
			name: "missing kind",
			in:   "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n\n\napiVersion: v1\nmetadata: {name: b}\n",
			want: "manifest document 2 (line 7): object of v1 has no kind",
		},
		{
			name: "missing name",
			in:   "apiVersion: apps/v1\nkind: DaemonSet\nspec: {}\n",
			want: "manifest document 1 (line 1): DaemonSet has no metadata.name",
		},
		{
			name: "scalar document",
			in:   "---\njust a string\n",
			want: "manifest document 2 (line 2): expected a mapping (an object), got a string",
		},
		{
			name: "bad list item",
			in:   "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n- {kind: Secret, metadata: {name: b}}\n",
			want: "manifest document 1 (line 1): List item 2: Secret has no apiVersion",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseManifest([]byte(tc.in))
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error:\n got %s\nwant prefix %s", err, tc.want)
			}
		})
	}
}

func TestParseManifestEmpty(t *testing.T) {
	for _, in := range []string{"", "\n\n", "# nothing\n", "---\n---\n...\n", "--- # c\n"} {
		objs, err := ParseManifest([]byte(in))
		if err != nil || len(objs) != 0 {
			t.Errorf("%q: %d objects, err %v", in, len(objs), err)
		}
	}
}

func TestParseManifestInlineDocument(t *testing.T) {
	objs, err := ParseManifest([]byte("--- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n"))
	if err != nil || len(objs) != 1 || objs[0].GetName() != "a" {
		t.Fatalf("objs %v err %v", refs(objs), err)
	}
}
