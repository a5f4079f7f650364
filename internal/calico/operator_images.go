package calico

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// operatorComponents are the Calico images the tigera-operator deploys for
// each custom resource of an operator install, by repository under calico/:
// an Installation brings calico-node (with its flexvol and mount-bpffs init
// containers), the CNI plugin, kube-controllers, Typha and the CSI driver
// with its registrar; APIServer, Goldmane and Whisker their own. Which
// resources an install creates is the release's own custom-resources.yaml.
var operatorComponents = map[string][]string{
	"Installation": {"node", "cni", "kube-controllers", "typha", "pod2daemon-flexvol", "csi", "node-driver-registrar"},
	"APIServer":    {"apiserver"},
	"Goldmane":     {"goldmane"},
	"Whisker":      {"whisker", "whisker-backend"},
}

var releaseRe = regexp.MustCompile(`^v3\.(\d+)\.\d+$`)

// OperatorDefaultRegistry is where the operator of a Calico release pulls
// Calico's images from when the Installation names no registry: docker.io
// up to v3.30 (operator v1.38), quay.io from v3.31 (operator v1.40).
func OperatorDefaultRegistry(version string) (string, error) {
	m := releaseRe.FindStringSubmatch(version)
	if m == nil {
		return "", fmt.Errorf("calico version %q: want v3.N.P", version)
	}
	if minor, _ := strconv.Atoi(m[1]); minor >= 31 {
		return "quay.io", nil
	}
	return "docker.io", nil
}

// OperatorImages are the images the operator will run for an operator
// install of Calico version, read from its (configured) files: one set per
// custom resource they create, at the release's tag, from the
// Installation's spec.registry or the operator's default registry, under
// its spec.imagePath or calico.
func OperatorImages(version string, objs []*Object) ([]string, error) {
	registry, err := OperatorDefaultRegistry(version)
	if err != nil {
		return nil, err
	}
	path := "calico"
	var kinds []string
	for _, obj := range objs {
		if obj.GroupVersionKind().Group != operatorGroup {
			continue
		}
		if _, ok := operatorComponents[obj.GetKind()]; ok && !slices.Contains(kinds, obj.GetKind()) {
			kinds = append(kinds, obj.GetKind())
		}
		if obj.GetKind() == "Installation" {
			if r, ok, _ := unstructured.NestedString(obj.Object, "spec", "registry"); ok && r != "" {
				registry = strings.TrimSuffix(r, "/")
			}
			if p, ok, _ := unstructured.NestedString(obj.Object, "spec", "imagePath"); ok && p != "" {
				path = p
			}
		}
	}
	if !slices.Contains(kinds, "Installation") {
		return nil, fmt.Errorf("calico %s operator install: no Installation (ConfigureOperator renders one)", version)
	}
	var out []string
	for _, k := range []string{"Installation", "APIServer", "Goldmane", "Whisker"} {
		if !slices.Contains(kinds, k) {
			continue
		}
		for _, c := range operatorComponents[k] {
			out = append(out, registry+"/"+path+"/"+c+":"+version)
		}
	}
	return out, nil
}
