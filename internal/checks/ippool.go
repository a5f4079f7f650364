package checks

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// IPPool checks that Calico has an enabled IP pool with the pod CIDR the
// cluster was made with and the encapsulation the cell asked for. A pool
// that disagrees with the cluster's podSubnet (the pre-v3.13 manifests
// hard-code 192.168.0.0/16) or that kept the manifest's default IPIP where
// VXLAN was asked for leaves pods running, on the wrong addresses or the
// wrong tunnel, which connectivity checks alone may not tell.
type IPPool struct {
	// ExpectedPodCIDR is the pool's CIDR; empty accepts any.
	ExpectedPodCIDR string
	// Encapsulation is IPIP, IPIPCrossSubnet, VXLAN, VXLANCrossSubnet or
	// None; empty accepts any.
	Encapsulation string
	// Client overrides the dynamic client built from env.Config (tests).
	Client dynamic.Interface
	// Wait bounds the wait for a matching pool (calico-node creates the
	// default pool as it starts); default: env.Timeout.
	Wait time.Duration
}

func (IPPool) Name() string { return NameIPPool }

// The resources IP pools are read from: the CRDs every install has, and the
// aggregated API of the Calico API server where one runs (it serves the same
// pools, so a pool may be listed twice, once per API).
var ipPoolResources = []schema.GroupVersionResource{
	{Group: "crd.projectcalico.org", Version: "v1", Resource: "ippools"},
	{Group: "projectcalico.org", Version: "v3", Resource: "ippools"},
}

// ipPool is what the check reads of a pool.
type ipPool struct {
	API, Name           string
	CIDR                string
	IPIPMode, VXLANMode string // as normalized by pool(): Always, CrossSubnet or Never
	Disabled            bool
	BlockSize           int64
	NATOutgoing         bool
	NodeSelector        string
}

func (p ipPool) String() string {
	s := fmt.Sprintf("ippool %s (%s): cidr %s, ipipMode %s, vxlanMode %s", p.Name, p.API, p.CIDR, p.IPIPMode, p.VXLANMode)
	if p.BlockSize > 0 {
		s += fmt.Sprintf(", blockSize %d", p.BlockSize)
	}
	s += fmt.Sprintf(", natOutgoing %t", p.NATOutgoing)
	if p.NodeSelector != "" && p.NodeSelector != "all()" {
		s += ", nodeSelector " + p.NodeSelector
	}
	if p.Disabled {
		s += ", DISABLED"
	}
	return s
}

func (c IPPool) Run(ctx context.Context, env *Env) Result {
	env.init()
	if _, err := encapModes(c.Encapsulation); err != nil {
		return fail(nil, "%v", err)
	}
	var want netip.Prefix
	if c.ExpectedPodCIDR != "" {
		p, err := netip.ParsePrefix(c.ExpectedPodCIDR)
		if err != nil {
			return fail(nil, "expected pod CIDR %q: %v", c.ExpectedPodCIDR, err)
		}
		want = p.Masked()
	}
	client := c.Client
	if client == nil {
		if env.Config == nil {
			return fail(nil, "env has no rest.Config for the dynamic client")
		}
		dc, err := dynamic.NewForConfig(env.Config)
		if err != nil {
			return fail(nil, "dynamic client: %v", err)
		}
		client = dc
	}
	wait := c.Wait
	if wait <= 0 {
		wait = env.Timeout
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	t0 := time.Now()
	var pools []ipPool
	var listErrs []string
	polls := 0
	err := poll(ctx, func(ctx context.Context) (bool, error) {
		polls++
		pools, listErrs = listIPPools(ctx, client)
		for _, p := range pools {
			if ok, _ := c.matches(p, want); ok {
				return true, nil
			}
		}
		return false, nil
	})
	var ev []Evidence
	var found []string
	matched := false
	for _, p := range pools {
		ok, why := c.matches(p, want)
		matched = matched || ok
		detail := p.String()
		if !ok {
			detail += ": " + why
		}
		ev = append(ev, Evidence{Check: c.Name(), Source: "api", Target: "ippool " + p.Name, OK: ok, Detail: detail, Attempts: polls})
		found = append(found, p.String())
	}
	for _, e := range listErrs {
		ev = append(ev, Evidence{Check: c.Name(), Source: "api", Target: "ippools", Detail: e, Attempts: polls})
	}
	if matched {
		// Other pools (an IPv6 one, a disabled leftover) are not failures.
		for i := range ev {
			ev[i].OK = true
		}
		ev[0].Latency = time.Since(t0)
		return Result{OK: true, Evidence: ev}
	}
	wantDesc := c.describeWant()
	if len(pools) == 0 {
		return fail(ev, "no IPPool found after %s (want %s): %s; %v", time.Since(t0).Round(time.Second), wantDesc, orDash(strings.Join(listErrs, "; ")), err)
	}
	return fail(ev, "no IPPool with %s; pools found: %s", wantDesc, strings.Join(found, "; "))
}

func (c IPPool) describeWant() string {
	var parts []string
	if c.ExpectedPodCIDR != "" {
		parts = append(parts, "cidr "+c.ExpectedPodCIDR)
	}
	if c.Encapsulation != "" {
		m, _ := encapModes(c.Encapsulation)
		parts = append(parts, fmt.Sprintf("encapsulation %s (ipipMode %s, vxlanMode %s)", c.Encapsulation, m.ipip, m.vxlan))
	}
	parts = append(parts, "enabled")
	return strings.Join(parts, ", ")
}

// matches says whether p is the pool asked for, and if not, why.
func (c IPPool) matches(p ipPool, want netip.Prefix) (bool, string) {
	var why []string
	if p.Disabled {
		why = append(why, "disabled")
	}
	if want.IsValid() {
		got, err := netip.ParsePrefix(p.CIDR)
		if err != nil {
			why = append(why, fmt.Sprintf("cidr %q unreadable", p.CIDR))
		} else if got.Masked() != want {
			why = append(why, "cidr is not "+want.String())
		}
	}
	if c.Encapsulation != "" {
		m, _ := encapModes(c.Encapsulation)
		if p.IPIPMode != m.ipip {
			why = append(why, fmt.Sprintf("ipipMode %s, want %s", p.IPIPMode, m.ipip))
		}
		if p.VXLANMode != m.vxlan {
			why = append(why, fmt.Sprintf("vxlanMode %s, want %s", p.VXLANMode, m.vxlan))
		}
	}
	return len(why) == 0, strings.Join(why, ", ")
}

type poolModes struct{ ipip, vxlan string }

// encapModes maps an Installation-style encapsulation to the pool fields
// it sets. Empty means any.
func encapModes(enc string) (poolModes, error) {
	switch enc {
	case "":
		return poolModes{}, nil
	case "IPIP":
		return poolModes{"Always", "Never"}, nil
	case "IPIPCrossSubnet":
		return poolModes{"CrossSubnet", "Never"}, nil
	case "VXLAN":
		return poolModes{"Never", "Always"}, nil
	case "VXLANCrossSubnet":
		return poolModes{"Never", "CrossSubnet"}, nil
	case "None":
		return poolModes{"Never", "Never"}, nil
	}
	return poolModes{}, fmt.Errorf("unknown encapsulation %q (want IPIP, IPIPCrossSubnet, VXLAN, VXLANCrossSubnet or None)", enc)
}

// listIPPools reads the pools of every API that serves them. An API that is
// not installed is not an error (the v3 API exists only with the Calico API
// server); other failures are returned as text, for evidence.
func listIPPools(ctx context.Context, client dynamic.Interface) ([]ipPool, []string) {
	var out []ipPool
	var errs []string
	for _, gvr := range ipPoolResources {
		list, err := client.Resource(gvr).List(ctx, metav1.ListOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) || isNoResource(err) {
				continue
			}
			errs = append(errs, fmt.Sprintf("list %s: %v", gvr.GroupResource(), err))
			continue
		}
		for i := range list.Items {
			out = append(out, pool(gvr, &list.Items[i]))
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, errs
}

// isNoResource is the dynamic fake's (and discovery's) way of saying the
// resource is not served.
func isNoResource(err error) bool {
	s := err.Error()
	return strings.Contains(s, "could not find the requested resource") || strings.Contains(s, "no matches for")
}

// pool reads an IPPool object. Unset modes mean Never (the API default).
// Pools written by Calico before v3.0's ipipMode field carry
// ipip: {enabled, mode: always|cross-subnet}, still read by later versions.
func pool(gvr schema.GroupVersionResource, u *unstructured.Unstructured) ipPool {
	p := ipPool{API: gvr.GroupVersion().String(), Name: u.GetName()}
	p.CIDR, _, _ = unstructured.NestedString(u.Object, "spec", "cidr")
	p.IPIPMode, _, _ = unstructured.NestedString(u.Object, "spec", "ipipMode")
	p.VXLANMode, _, _ = unstructured.NestedString(u.Object, "spec", "vxlanMode")
	p.Disabled, _, _ = unstructured.NestedBool(u.Object, "spec", "disabled")
	p.BlockSize, _, _ = unstructured.NestedInt64(u.Object, "spec", "blockSize")
	p.NATOutgoing, _, _ = unstructured.NestedBool(u.Object, "spec", "natOutgoing")
	p.NodeSelector, _, _ = unstructured.NestedString(u.Object, "spec", "nodeSelector")
	if p.IPIPMode == "" {
		if enabled, ok, _ := unstructured.NestedBool(u.Object, "spec", "ipip", "enabled"); ok && enabled {
			mode, _, _ := unstructured.NestedString(u.Object, "spec", "ipip", "mode")
			p.IPIPMode = "Always"
			if strings.EqualFold(mode, "cross-subnet") {
				p.IPIPMode = "CrossSubnet"
			}
		}
	}
	if p.IPIPMode == "" {
		p.IPIPMode = "Never"
	}
	if p.VXLANMode == "" {
		p.VXLANMode = "Never"
	}
	return p
}
