package checks

import (
	"context"
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Names of the Calico checks.
const (
	NameCalicoNodeReady            = "CalicoNodeReady"
	NameCalicoKubeControllersReady = "CalicoKubeControllersReady"
	NameIPPool                     = "IPPool"
	NameTunnelDevice               = "TunnelDevice"
	NameNoPodStuckCreating         = "NoPodStuckCreating"
	NameNetworkPolicy              = "NetworkPolicy"
)

var (
	_ Dependent = NetworkPolicy{}
	_ Check     = CalicoNodeReady{}
	_ Check     = CalicoKubeControllersReady{}
	_ Check     = IPPool{}
	_ Check     = TunnelDevice{}
	_ Check     = NoPodStuckCreating{}
)

// Calico is the suite Calico cells add after Default: its own components'
// health, the pool and tunnel it configured, and whether it enforces
// NetworkPolicy (which is why people pick it). The pool and tunnel checks
// accept whatever encapsulation the pools say; CalicoFor pins them.
func Calico() []Check { return CalicoFor("", "") }

// CalicoFor is Calico for a cell that asked for podCIDR and encapsulation
// (IPIP, IPIPCrossSubnet, VXLAN, VXLANCrossSubnet or None); an empty value
// accepts any.
func CalicoFor(podCIDR, encapsulation string) []Check {
	return []Check{
		CalicoNodeReady{},
		CalicoKubeControllersReady{},
		IPPool{ExpectedPodCIDR: podCIDR, Encapsulation: encapsulation},
		TunnelDevice{Encapsulation: encapsulation},
		NoPodStuckCreating{},
		NetworkPolicy{},
	}
}

// Calico's labels and names, the same in calico.yaml and in the operator's
// rendering.
const (
	calicoNodeSelector      = "k8s-app=calico-node"
	calicoKubeControllers   = "calico-kube-controllers"
	calicoNodeContainer     = "calico-node"
	calicoOperatorNamespace = "calico-system" // operator installs
	calicoManifestNamespace = "kube-system"   // calico.yaml installs
)

// calicoNamespaces are where to look for Calico's pods: the one asked for,
// else the CNI namespace and then both install methods' namespaces.
func calicoNamespaces(env *Env, override string) []string {
	if override != "" {
		return []string{override}
	}
	var out []string
	for _, ns := range []string{env.CNINamespace, calicoOperatorNamespace, calicoManifestNamespace} {
		if ns != "" && !slices.Contains(out, ns) {
			out = append(out, ns)
		}
	}
	return out
}

// findCalicoNamespace is the first of calicoNamespaces with calico-node
// pods, or "" when none has any yet.
func findCalicoNamespace(ctx context.Context, env *Env, override string) (string, error) {
	var errs []string
	for _, ns := range calicoNamespaces(env, override) {
		list, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: calicoNodeSelector})
		if err != nil {
			errs = append(errs, fmt.Sprintf("list pods in %s: %v", ns, err))
			continue
		}
		if len(list.Items) > 0 {
			return ns, nil
		}
	}
	if len(errs) > 0 {
		return "", fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return "", nil
}
