package calico

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"net"
	"strconv"
	"strings"
)

// SetPodCIDR sets the IPv4 pool calico-node creates at first start
// (CALICO_IPV4POOL_CIDR), adding the variable where the manifest has it
// commented out (v3.13+ ships it that way and auto-detects kubeadm's
// podSubnet). Setting it keeps the pool equal to the cluster's podSubnet
// for every version, including v3.1-v3.12 which hard-code 192.168.0.0/16.
func SetPodCIDR(objs []*Object, cidr string) error {
	ip, n, err := net.ParseCIDR(cidr)
	if err != nil || ip.To4() == nil {
		return fmt.Errorf("pod CIDR %q: want an IPv4 CIDR like 192.168.0.0/16", cidr)
	}
	if !ip.Equal(n.IP) {
		return fmt.Errorf("pod CIDR %q has host bits set: did you mean %s?", cidr, n)
	}
	c, err := nodeContainer(objs)
	if err != nil {
		return fmt.Errorf("set pod CIDR: %w", err)
	}
	setEnv(c, "CALICO_IPV4POOL_CIDR", n.String())
	return nil
}

// Encapsulation is how pod traffic crosses nodes.
type Encapsulation string

// The encapsulations of the default IPv4 pool.
const (
	IPIP             Encapsulation = "IPIP"
	VXLAN            Encapsulation = "VXLAN"
	VXLANCrossSubnet Encapsulation = "VXLANCrossSubnet"
	None             Encapsulation = "None"
)

var encapsulations = []Encapsulation{IPIP, VXLAN, VXLANCrossSubnet, None}

// ParseEncapsulation reads one of IPIP, VXLAN, VXLANCrossSubnet, None.
func ParseEncapsulation(s string) (Encapsulation, error) {
	for _, e := range encapsulations {
		if string(e) == s {
			return e, nil
		}
	}
	names := make([]string, len(encapsulations))
	for i, e := range encapsulations {
		names[i] = string(e)
	}
	return "", fmt.Errorf("encapsulation %q: want one of %s", s, strings.Join(names, ", "))
}

// poolModes is what the pool env variables say for each encapsulation.
func (e Encapsulation) poolModes() (ipip, vxlan string) {
	switch e {
	case IPIP:
		return "Always", "Never"
	case VXLAN:
		return "Never", "Always"
	case VXLANCrossSubnet:
		return "Never", "CrossSubnet"
	}
	return "Never", "Never"
}

// SetEncapsulation edits calico.yaml for e, as the Calico docs describe:
// the pool modes CALICO_IPV4POOL_IPIP and CALICO_IPV4POOL_VXLAN; for VXLAN
// alone also calico_backend "vxlan" and no BIRD health flags, since no BIRD
// runs then. VXLANCrossSubnet keeps BIRD: routes inside a subnet still come
// from BGP. A manifest without CALICO_IPV4POOL_VXLAN (before v3.15, in
// particular v3.1/v3.2, whose calico-node has no VXLAN) cannot take a VXLAN
// mode; one already switched to the vxlan backend cannot take IPIP or None,
// which need BIRD.
func SetEncapsulation(objs []*Object, e Encapsulation) error {
	if _, err := ParseEncapsulation(string(e)); err != nil {
		return err
	}
	c, err := nodeContainer(objs)
	if err != nil {
		return fmt.Errorf("set encapsulation %s: %w", e, err)
	}
	data, err := configData(objs)
	if err != nil {
		return fmt.Errorf("set encapsulation %s: %w", e, err)
	}
	_, hasIPIP := env(c, "CALICO_IPV4POOL_IPIP")
	_, hasVXLAN := env(c, "CALICO_IPV4POOL_VXLAN")
	wantsVXLAN := e == VXLAN || e == VXLANCrossSubnet
	switch {
	case !hasIPIP:
		return fmt.Errorf("set encapsulation %s: container %s has no CALICO_IPV4POOL_IPIP: not a calico.yaml this harness knows", e, NodeContainer)
	case wantsVXLAN && !hasVXLAN:
		return fmt.Errorf("set encapsulation %s: this manifest cannot take VXLAN: container %s has no CALICO_IPV4POOL_VXLAN (calico.yaml before v3.15; v3.1/v3.2 calico-node has no VXLAN at all)", e, NodeContainer)
	case !wantsVXLAN && data["calico_backend"] == "vxlan":
		return fmt.Errorf("set encapsulation %s: the manifest's calico_backend is \"vxlan\" (a VXLAN-only manifest without BIRD); %s needs BGP routes from BIRD", e, e)
	}
	ipip, vxlan := e.poolModes()
	setEnv(c, "CALICO_IPV4POOL_IPIP", ipip)
	if hasVXLAN {
		setEnv(c, "CALICO_IPV4POOL_VXLAN", vxlan)
	}
	if e == VXLAN {
		data["calico_backend"] = "vxlan"
		for _, probe := range []string{"livenessProbe", "readinessProbe"} {
			dropProbeArgs(c, probe, "-bird-live", "-bird-ready", "--bird-live", "--bird-ready")
		}
	}
	return nil
}

// dropProbeArgs removes args from a probe's exec command.
func dropProbeArgs(c map[string]any, probe string, args ...string) {
	p, _ := c[probe].(map[string]any)
	ex, _ := p["exec"].(map[string]any)
	cmd, ok := ex["command"].([]any)
	if !ok {
		return
	}
	out := make([]any, 0, len(cmd))
	for _, a := range cmd {
		s, _ := a.(string)
		drop := false
		for _, d := range args {
			drop = drop || s == d
		}
		if !drop {
			out = append(out, a)
		}
	}
	ex["command"] = out
}

// SetMTU sets veth_mtu in calico-config, which calico-node turns into the
// pod interfaces' and tunnels' MTU. 0 asks calico-node to detect it, which
// only releases that ship veth_mtu "0" (v3.19+) understand; older ones would
// write an MTU of 0 into the CNI config.
func SetMTU(objs []*Object, mtu int) error {
	if mtu != 0 && (mtu < 576 || mtu > 9216) {
		return fmt.Errorf("MTU %d: want 0 (auto) or 576-9216", mtu)
	}
	data, err := configData(objs)
	if err != nil {
		return fmt.Errorf("set MTU: %w", err)
	}
	cur, ok := data["veth_mtu"].(string)
	if !ok {
		return fmt.Errorf("set MTU: ConfigMap %s has no veth_mtu (calico.yaml of v3.1-v3.2 sets FELIX_IPINIPMTU on calico-node instead)", ConfigMapName)
	}
	if mtu == 0 && cur != "0" {
		return fmt.Errorf("set MTU: auto (0) needs a Calico that detects the MTU (v3.19+); this manifest ships veth_mtu %q", cur)
	}
	data["veth_mtu"] = strconv.Itoa(mtu)
	return nil
}

// PoolEncapsulation is the tunnel the default pool of a (configured)
// install will use, read from the objects as the cluster will get them: an
// operator install's Installation's first pool (the operator's default,
// VXLANCrossSubnet in custom-resources.yaml, when it names none), or
// calico.yaml's CALICO_IPV4POOL_IPIP / _VXLAN modes (an unset mode is
// calico-node's default: IPIP Always, VXLAN Never).
func PoolEncapsulation(objs []*Object) (Encapsulation, error) {
	if isOperatorInstall(objs) {
		for _, obj := range objs {
			if obj.GroupVersionKind().Group != operatorGroup || obj.GetKind() != "Installation" {
				continue
			}
			if pool, ok := firstPool(obj); ok {
				if e, _, _ := unstructured.NestedString(pool, "encapsulation"); e != "" {
					return ParseEncapsulation(e)
				}
			}
		}
		return VXLANCrossSubnet, nil
	}
	c, err := nodeContainer(objs)
	if err != nil {
		return "", fmt.Errorf("pool encapsulation: %w", err)
	}
	mode := func(name, def string) string {
		if e, ok := env(c, name); ok {
			if v, _ := e["value"].(string); v != "" {
				return v
			}
		}
		return def
	}
	ipip, vxlan := mode("CALICO_IPV4POOL_IPIP", "Always"), mode("CALICO_IPV4POOL_VXLAN", "Never")
	switch {
	case ipip != "Never" && ipip != "Off" && ipip != "false":
		return IPIP, nil
	case vxlan == "Always":
		return VXLAN, nil
	case vxlan == "CrossSubnet":
		return VXLANCrossSubnet, nil
	}
	return None, nil
}
