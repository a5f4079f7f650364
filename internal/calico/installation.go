package calico

import (
	"fmt"
	"net"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// InstallationOptions configure the operator's Installation resource.
type InstallationOptions struct {
	CIDR          string        // the IPv4 pool; required, the cluster's podSubnet
	Encapsulation Encapsulation // required
	MTU           int           // 0: the operator detects it
	BlockSize     int           // 0: 26, the operator's default
	// Registry for Calico's images: "quay.io", "docker.io" or a mirror
	// host[/path]; "" keeps the operator's default.
	Registry string
	// ImagePath replaces calico/ in the images' paths (spec.imagePath);
	// "" keeps it.
	ImagePath string
}

// Installation renders operator.tigera.io/v1 Installation "default", what
// custom-resources.yaml holds, with the harness's options. Fields the older
// operators' CRDs lack (such as ipPools[].name) are left out, since server-side
// apply rejects fields a CRD's schema does not declare.
func Installation(o InstallationOptions) (*Object, error) {
	ip, n, err := net.ParseCIDR(o.CIDR)
	if err != nil || ip.To4() == nil || !ip.Equal(n.IP) {
		return nil, fmt.Errorf("installation: pod CIDR %q: want an IPv4 network like 192.168.0.0/16", o.CIDR)
	}
	if _, err := ParseEncapsulation(string(o.Encapsulation)); err != nil {
		return nil, fmt.Errorf("installation: %w", err)
	}
	if o.MTU != 0 && (o.MTU < 576 || o.MTU > 9216) {
		return nil, fmt.Errorf("installation: MTU %d: want 0 (auto) or 576-9216", o.MTU)
	}
	bs := o.BlockSize
	if bs == 0 {
		bs = 26
	}
	ones, _ := n.Mask.Size()
	if bs < ones || bs > 32 {
		return nil, fmt.Errorf("installation: block size /%d does not fit in pool %s", bs, n)
	}
	network := map[string]any{
		"ipPools": []any{map[string]any{
			"cidr":          n.String(),
			"encapsulation": string(o.Encapsulation),
			"blockSize":     int64(bs),
			"natOutgoing":   "Enabled",
			"nodeSelector":  "all()",
		}},
	}
	if o.MTU != 0 {
		network["mtu"] = int64(o.MTU)
	}
	spec := map[string]any{"calicoNetwork": network}
	if o.Registry != "" {
		r, err := CheckRegistry(o.Registry)
		if err != nil {
			return nil, fmt.Errorf("installation: %w", err)
		}
		// The operator joins registry and image path without a separator of
		// its own, so the value ends in a slash.
		spec["registry"] = r + "/"
	}
	if o.ImagePath != "" {
		p, err := CheckImagePath(o.ImagePath)
		if err != nil {
			return nil, fmt.Errorf("installation: %w", err)
		}
		spec["imagePath"] = p
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "operator.tigera.io/v1",
		"kind":       "Installation",
		"metadata":   map[string]any{"name": "default"},
		"spec":       spec,
	}}
	return u, nil
}
