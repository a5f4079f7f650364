package uninstall

import (
	"os"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/cnimatrix/cnimatrix/internal/calicodata"
	"github.com/cnimatrix/cnimatrix/internal/install"
	"github.com/cnimatrix/cnimatrix/internal/repo"
)

func TestSplitCustomPutsTheOperatorsResourcesFirst(t *testing.T) {
	objs := manifestObjects(t, "../calico/testdata/tigera-operator-v3.28-shaped.yaml")
	custom, rest := splitCustom(objs)
	if len(custom) != 2 || custom[0].GetKind() != "Installation" || custom[1].GetKind() != "APIServer" {
		t.Errorf("custom resources: %s", refs(custom))
	}
	if len(custom)+len(rest) != len(objs) {
		t.Errorf("%d + %d objects, want %d", len(custom), len(rest), len(objs))
	}
	for _, o := range rest {
		if o.GetKind() == "Installation" || o.GetKind() == "APIServer" {
			t.Errorf("%s among the rest", o.GetKind())
		}
	}
}

func TestKubernetesKeys(t *testing.T) {
	for k, want := range map[string]bool{
		"node.alpha.kubernetes.io/ttl":                           true,
		"kubeadm.alpha.kubernetes.io/cri-socket":                 true,
		"volumes.kubernetes.io/controller-managed-attach-detach": true,
		"flannel.alpha.coreos.com/backend-data":                  false,
		"projectcalico.org/IPv4Address":                          false,
		"plain":                                                  false,
	} {
		if got := kubernetesKey(k); got != want {
			t.Errorf("%s: %v, want %v", k, got, want)
		}
	}
}

// Of the real v3.32.1 calico.yaml, only calico-kube-controllers runs on
// the pod network: it is deleted before calico-node, which must still be
// there to tear its pod's network down.
func TestSplitPodNetworkOfRealCalico(t *testing.T) {
	root, err := repo.Root()
	if err != nil {
		t.Fatal(err)
	}
	d := calicodata.FindForTest(t, root)
	objs := manifestObjects(t, d.ManifestPath("v3.32.1", "calico.yaml"))
	podNet, rest := splitPodNetwork(objs)
	if got := refs(podNet); got != "Deployment kube-system/calico-kube-controllers" {
		t.Errorf("pod-network workloads: %q", got)
	}
	if len(podNet)+len(rest) != len(objs) {
		t.Errorf("%d + %d objects, want %d", len(podNet), len(rest), len(objs))
	}
}

func manifestObjects(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := install.ParseManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}
