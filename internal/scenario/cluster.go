package scenario

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/cnimatrix/cnimatrix/internal/catalog"
)

// kubernetes parses the Kubernetes versions (default: the catalog's).
func (v *validator) kubernetes(raw *rawScenario, s *Scenario, cat *catalog.Catalog) {
	if len(raw.Kubernetes) == 0 {
		s.Kubernetes = []string{cat.DefaultKubernetes()}
	}
	for _, k := range raw.Kubernetes {
		if !cat.HasKubernetes(k.V) {
			v.add(k.Line, "unknown Kubernetes version %q (known: %s)", k.V, strings.Join(cat.KubernetesVersions(), ", "))
		}
		s.Kubernetes = append(s.Kubernetes, k.V)
	}
}

// arches parses the arches (default: the host's).
func (v *validator) arches(raw *rawScenario, s *Scenario) {
	if len(raw.Arch) == 0 {
		s.Arch = []string{HostArch()}
	}
	for _, a := range raw.Arch {
		if a.V != "amd64" && a.V != "arm64" {
			v.add(a.Line, "unknown arch %q (known: amd64, arm64)", a.V)
		}
		s.Arch = append(s.Arch, a.V)
	}
}

// provider parses the provider: kind, qemu or auto (kind for the host's
// arch, QEMU VM workers for the other).
func (v *validator) provider(raw *rawScenario, s *Scenario) {
	s.Provider = raw.Provider.V
	if s.Provider == "" {
		s.Provider = "auto"
	}
	switch s.Provider {
	case "auto", "kind", "qemu":
		if raw.Existing != nil {
			v.add(raw.Existing.Kubeconfig.Line, "existing: only with provider existing, not %q", s.Provider)
		}
	case ProviderExisting:
		v.existing(raw, s)
	default:
		v.add(raw.Provider.Line, "unknown provider %q (known: auto, kind, qemu, existing)", s.Provider)
	}
	if s.Provider == "kind" {
		for _, a := range raw.Arch {
			if a.V != HostArch() && (a.V == "amd64" || a.V == "arm64") {
				v.add(a.Line, "provider kind cannot run %s nodes on this %s host: kind nodes under qemu-user emulation run %s binaries natively and break iptables, so they would hide exactly the failures cnimatrix looks for; use provider qemu (or auto)", a.V, HostArch(), HostArch())
			}
		}
	}
}

// nodes parses the node count and the pod and service networks.
func (v *validator) nodes(raw *rawScenario, s *Scenario) {
	s.Nodes = 2
	if raw.Nodes.V != "" {
		var n int
		if _, err := fmt.Sscanf(raw.Nodes.V, "%d", &n); err != nil || n < 1 || n > 10 || fmt.Sprint(n) != raw.Nodes.V {
			v.add(raw.Nodes.Line, "nodes %q: want a whole number from 1 to 10", raw.Nodes.V)
		}
		s.Nodes = n
	}
	s.PodSubnet = orDefault(raw.PodSubnet.V, "10.244.0.0/16")
	s.ServiceSub = orDefault(raw.ServiceSubnet.V, "10.96.0.0/16")
	pods := v.subnet(raw.PodSubnet, "podSubnet", s.PodSubnet)
	services := v.subnet(raw.ServiceSubnet, "serviceSubnet", s.ServiceSub)
	if pods.IsValid() && services.IsValid() && pods.Overlaps(services) {
		line := raw.ServiceSubnet.Line
		if line == 0 {
			line = raw.PodSubnet.Line
		}
		v.add(line, "serviceSubnet %s overlaps podSubnet %s: a Service IP would be a pod's", services, pods)
	}
}

// subnet parses a network of the scenario: an IPv4 CIDR whose host bits
// are zero. The zero Prefix when it is not one (reported at its line).
func (v *validator) subnet(f str, name, value string) netip.Prefix {
	p, err := netip.ParsePrefix(value)
	switch {
	case err != nil || !p.Addr().Is4():
		v.add(f.Line, "%s %q: want an IPv4 CIDR like 10.244.0.0/16", name, value)
		return netip.Prefix{}
	case p.Masked() != p:
		v.add(f.Line, "%s %q: host bits are set; the network is %s", name, value, p.Masked())
		return netip.Prefix{}
	}
	return p
}

// ProviderExisting runs cells on a cluster cnimatrix did not create (the
// scenario's existing block, or cnimatrix run --kubeconfig).
const ProviderExisting = "existing"

// Existing is the cluster of a provider-existing scenario.
type Existing struct {
	// Kubeconfig is the file to reach it with, Context the context in it
	// ("" for its current context).
	Kubeconfig, Context string
	// Mode is ExistingInstalled (the CNI is already there: detect it and
	// run the checks) or ExistingInstall (apply the version under test,
	// check, and delete what was applied).
	Mode string
	// ReplaceCNI lets install mode start though another CNI is installed
	// (cnimatrix run --replace-cni).
	ReplaceCNI bool
}

// Modes of provider existing.
const (
	ExistingInstalled = "installed"
	ExistingInstall   = "install"
)

// existing parses the existing block of a provider-existing scenario.
func (v *validator) existing(raw *rawScenario, s *Scenario) {
	s.Existing = &Existing{Mode: ExistingInstalled}
	if raw.Existing == nil {
		// cnimatrix run --kubeconfig gives it (UseExisting); without it
		// the run refuses to start.
		return
	}
	e := raw.Existing
	s.Existing.Context = e.Context.V
	if k := e.Kubeconfig.V; k != "" {
		if !filepath.IsAbs(k) {
			k = filepath.Join(filepath.Dir(v.path), k)
		}
		s.Existing.Kubeconfig = k
	}
	switch e.Mode.V {
	case "", ExistingInstalled:
	case ExistingInstall:
		s.Existing.Mode = ExistingInstall
	default:
		v.add(e.Mode.Line, "existing.mode %q: want installed (check the CNI the cluster runs) or install (install the version under test, then remove it)", e.Mode.V)
	}
	if raw.ReuseClusters.V == "true" {
		v.add(raw.ReuseClusters.Line, "reuseClusters: not with provider existing (the cluster is not cnimatrix's to reuse)")
	}
	if raw.Upgrade != nil && s.Existing.Mode == ExistingInstalled {
		v.add(raw.Upgrade.To.Line, "upgrade: provider existing in installed mode upgrades nothing; use existing.mode: install")
	}
}

// UseExisting makes every cell of the scenario run on the cluster of
// kubeconfig (and context): cnimatrix run --kubeconfig.
func (s *Scenario) UseExisting(kubeconfig, context, mode string, replaceCNI bool) {
	if s.Existing == nil {
		s.Existing = &Existing{Mode: ExistingInstalled}
	}
	s.Provider = ProviderExisting
	s.ReuseClusters = false // the cluster is not cnimatrix's to reuse
	s.Existing.Kubeconfig = kubeconfig
	if context != "" {
		s.Existing.Context = context
	}
	if mode != "" {
		s.Existing.Mode = mode
	}
	s.Existing.ReplaceCNI = s.Existing.ReplaceCNI || replaceCNI
}
