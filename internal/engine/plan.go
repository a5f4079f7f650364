package engine

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/cnimatrix/cnimatrix/internal/calico"
	"github.com/cnimatrix/cnimatrix/internal/checks"
	"github.com/cnimatrix/cnimatrix/internal/cluster"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

// CellPlan is what a cell will do, resolved once from its scenario without
// a cluster, a Docker engine or a build. The steps read it, not the
// scenario; `cnimatrix run --dry-run` prints it.
type CellPlan struct {
	Cell matrix.Cell
	// Skip is why the cell is skipped without a cluster; "" when it runs.
	Skip string
	// Blocked is why the cell cannot run yet though its scenario is valid:
	// its downloaded manifest is not pinned or not cached (a dry run
	// loads such scenarios; a run refuses them).
	Blocked string
	// ProviderErr is set when the cell names a provider there is none of
	// (the cell is skipped with it).
	ProviderErr string
	// Layout is the cluster's nodes, control plane first; Nodes says it
	// in words: "control plane amd64 (kind node), 1 worker(s) arm64 (QEMU
	// VM)".
	Layout []cluster.NodeSpec
	Nodes  string
	// Manifest is the file applied, Pin how it is pinned ("" for a
	// local file), Edits what cnimatrix changes in it. ManifestErr is why
	// the manifest cannot be applied as configured (the cell fails its
	// cni-install with it).
	Manifest, Pin string
	Edits         []string
	ManifestErr   error
	// Encapsulation is the tunnel the configured manifest sets up (the
	// kernel-facts step requires it of every node).
	Encapsulation string
	// Images are the configured manifest's images and where each comes
	// from (the run's registry mirrors upstream; rebuilt ones are built
	// here first); ImagesFrom is matrix.ImagesUpstream or
	// matrix.ImagesRebuiltFromSource for Calico, "" for other CNIs.
	Images     []string
	ImagesFrom string
	// Checks are what the checks step runs, in order, CheckNames their names.
	Checks     []checks.Check `json:"-"`
	CheckNames []string
	// Upgrade is set for an upgrade-path cell.
	Upgrade *UpgradePlan
	// Soak is the soak after the checks (zero Duration: none).
	Soak scenario.Soak
	// Timeouts are the scenario's; the access step scales them once the
	// nodes' slowdown is measured.
	Timeouts scenario.Timeouts
	// Reuse: the cell shares a cluster with the others of PoolKey.
	Reuse   bool
	PoolKey string
	// Expect is the expected outcome (and root cause); ExpectText says it.
	Expect     scenario.Expectation
	ExpectText string

	provider cluster.Provider
	skip     *scenario.Skip
	// imageRefs are the images of the configured manifests (the upgrade's
	// too), as the nodes pull them.
	imageRefs []string
	// scenario is read only for what all its cells share (the images
	// pushed once for every cell); a step that needs something of it for
	// its own cell gets it resolved here.
	scenario *scenario.Scenario
}

// UpgradePlan is an upgrade-path cell's second half.
type UpgradePlan struct {
	To, Manifest  string
	Encapsulation string
	Checks        []checks.Check `json:"-"`
	scenario.Upgrade
}

// Plan resolves a cell's plan as `cnimatrix run --dry-run` prints it: with
// no engine, so without the run's options (soak, reuse). An error is a
// manifest the cell could not apply (it would fail its cni-install).
func Plan(s *scenario.Scenario, cell matrix.Cell) (CellPlan, error) {
	prov, err := providerFor(s, cell, dryRunProviders())
	p := resolvePlan(s, cell, prov, err)
	return *p, p.ManifestErr
}

// planCell is Plan with this run's providers and options.
func (e *Engine) planCell(s *scenario.Scenario, cell matrix.Cell) *CellPlan {
	prov, err := providerFor(s, cell, e.providers())
	p := resolvePlan(s, cell, prov, err)
	p.Soak = e.soakFor(s)
	p.Reuse = e.reuses(s) && !p.onExisting() // --reuse-clusters: not a cluster cnimatrix made
	return p
}

func resolvePlan(s *scenario.Scenario, cell matrix.Cell, prov cluster.Provider, provErr error) *CellPlan {
	p := &CellPlan{Cell: cell, scenario: s, provider: prov, Timeouts: s.Timeouts, Soak: s.Soak, Reuse: s.ReuseClusters,
		PoolKey: poolKey(s, cell), ImagesFrom: s.CNI.Images, Pin: s.CNI.Pins[cell.CNIVersion], Manifest: s.CNI.Manifests[cell.CNIVersion]}
	p.Expect = s.ExpectFor(cell)
	p.ExpectText = string(p.Expect.Outcome)
	if p.Expect.RootCause != "" {
		p.ExpectText += " (" + p.Expect.RootCause + ")"
	}
	if provErr != nil {
		p.ProviderErr = provErr.Error()
		return p
	}
	if sk := s.SkipFor(cell); sk != nil {
		p.skip, p.Skip = sk, sk.Reason
		return p
	}
	p.Layout = prov.Layout(cell.Arch, s.Nodes)
	p.Nodes = describeLayout(p.Layout, prov, cell.Kubernetes, s)
	if p.installed() {
		// The CNI is the cluster's own: nothing to apply, the checks only.
		p.Manifest, p.Pin = "", ""
		p.Encapsulation = encapsulation(&s.CNI, nil)
		p.Checks = installedChecks(existingChecks(cniChecks(&s.CNI, s.PodSubnet, p.Encapsulation)))
		p.CheckNames = checkNames(p.Checks)
		return p
	}
	p.Edits = declaredEdits(&s.CNI)
	if why := s.CNI.Unavailable[cell.CNIVersion]; why != "" {
		p.Blocked = why
		return p
	}
	objs, _, err := configuredManifest(p.Manifest, &s.CNI)
	if err != nil {
		p.ManifestErr = err
		return p
	}
	if p.mixed() {
		pinned, err := pinToArch(objs, cell.Arch)
		if err != nil {
			p.ManifestErr = err
			return p
		}
		for _, w := range pinned {
			p.Edits = append(p.Edits, w+" pinned to "+archLabel+"="+cell.Arch)
		}
	}
	for _, im := range calico.Images(objs) {
		p.imageRefs = append(p.imageRefs, im)
		from := "from the run's registry: built here, imported (images import), or pulled through (--pull-through)"
		if s.CNI.Images == matrix.ImagesRebuiltFromSource && calicoComponent(im, cell.CNIVersion) != "" {
			from = "rebuilt from " + s.CNI.Sources[cell.CNIVersion].Archive
		}
		p.Images = append(p.Images, im+": "+from)
	}
	p.Encapsulation = encapsulation(&s.CNI, objs)
	p.Checks = cniChecks(&s.CNI, s.PodSubnet, p.Encapsulation)
	if p.onExisting() {
		p.Checks = existingChecks(p.Checks)
	}
	p.CheckNames = checkNames(p.Checks)
	if cell.UpgradeTo != "" && s.Upgrade != nil {
		up := &UpgradePlan{To: s.Upgrade.To, Manifest: s.Upgrade.Manifest, Upgrade: *s.Upgrade}
		if objs, _, err := configuredManifest(up.Manifest, &s.CNI); err == nil {
			up.Encapsulation = encapsulation(&s.CNI, objs)
			for _, im := range calico.Images(objs) {
				if !slices.Contains(p.imageRefs, im) {
					p.imageRefs = append(p.imageRefs, im)
				}
			}
		} else {
			up.Encapsulation = encapsulation(&s.CNI, nil)
		}
		up.Checks = cniChecks(&s.CNI, s.PodSubnet, up.Encapsulation)
		p.Upgrade = up
	}
	return p
}

func checkNames(list []checks.Check) []string {
	var out []string
	for _, c := range list {
		out = append(out, c.Name())
	}
	return out
}

// providerFor is the provider of a cell: one of provs by name, or for
// provider existing the scenario's cluster.
func providerFor(s *scenario.Scenario, cell matrix.Cell, provs []cluster.Provider) (cluster.Provider, error) {
	if cell.Provider == scenario.ProviderExisting {
		return existingProvider(s)
	}
	return providerByName(cell.Provider, provs)
}

// controlPlaneArch is the arch of the cluster's control plane.
func (p *CellPlan) controlPlaneArch() string {
	if len(p.Layout) == 0 {
		return p.Cell.Arch
	}
	return p.Layout[0].Arch
}

// mixed: the cell's nodes are of its arch, its control plane of another
// (an amd64 kind control plane beside arm64 VM workers).
func (p *CellPlan) mixed() bool { return p.controlPlaneArch() != p.Cell.Arch }

// cni is the scenario's CNI section, for the helpers shared with the
// scenario-wide image work.
func (p *CellPlan) cni() *scenario.CNISpec { return &p.scenario.CNI }

func describeLayout(nodes []cluster.NodeSpec, prov cluster.Provider, k8s string, s *scenario.Scenario) string {
	if w, ok := prov.(interface{ Where() string }); ok {
		mode := s.Existing.Mode + " mode"
		return fmt.Sprintf("%s, %s; Kubernetes %s expected; the nodes of the cell's arch run the checks", w.Where(), mode, k8s)
	}
	var parts []string
	workers, wArch := 0, ""
	for _, n := range nodes {
		if n.Role == cluster.ControlPlane {
			parts = append(parts, fmt.Sprintf("control plane %s (%s)", n.Arch, prov.NodeKind(n)))
			continue
		}
		workers++
		wArch = fmt.Sprintf("%s (%s)", n.Arch, prov.NodeKind(n))
	}
	if workers > 0 {
		parts = append(parts, fmt.Sprintf("%d worker(s) %s", workers, wArch))
	}
	return fmt.Sprintf("%s; Kubernetes %s; pods %s, services %s", strings.Join(parts, ", "), k8s, s.PodSubnet, s.ServiceSub)
}

// declaredEdits are the scenario's own edits of the manifest.
func declaredEdits(cni *scenario.CNISpec) []string {
	var out []string
	if o := cni.Calico; o != nil {
		out = append(out, "pool CIDR "+o.PodCIDR)
		if o.Encapsulation != "" {
			out = append(out, "encapsulation "+string(o.Encapsulation))
		}
		if o.MTU != 0 {
			out = append(out, fmt.Sprintf("MTU %d", o.MTU))
		}
		if o.Registry != "" {
			out = append(out, "registry "+o.Registry)
		}
		if o.ImagePath != "" {
			out = append(out, "image path "+o.ImagePath)
		}
	}
	for _, from := range slices.Sorted(maps.Keys(cni.ImageOverrides)) {
		out = append(out, "image "+from+" -> "+cni.ImageOverrides[from])
	}
	return out
}

// String is the plan as a person reads it.
func (p CellPlan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", p.Cell.ID())
	if p.ProviderErr != "" {
		fmt.Fprintf(&b, "  skipped, no cluster: %s\n  expect: %s\n", p.ProviderErr, p.ExpectText)
		return b.String()
	}
	if p.Skip != "" {
		fmt.Fprintf(&b, "  skipped, no cluster: %s\n  expect: %s\n", p.Skip, p.ExpectText)
		return b.String()
	}
	fmt.Fprintf(&b, "  cluster:  %s\n", p.Nodes)
	if p.Blocked != "" {
		fmt.Fprintf(&b, "  cannot run yet: %s\n  expect:   %s\n", p.Blocked, p.ExpectText)
		return b.String()
	}
	pin := p.Pin
	if pin == "" {
		pin = "local file"
	}
	if p.Manifest == "" {
		fmt.Fprintf(&b, "  cni:      the cluster's own (detected, not applied)\n")
	} else {
		fmt.Fprintf(&b, "  manifest: %s (%s)\n", p.Manifest, pin)
	}
	for _, e := range p.Edits {
		fmt.Fprintf(&b, "  edit:     %s\n", e)
	}
	for _, im := range p.Images {
		fmt.Fprintf(&b, "  image:    %s\n", im)
	}
	fmt.Fprintf(&b, "  checks:   %s\n", strings.Join(p.CheckNames, ", "))
	if p.Upgrade != nil {
		fmt.Fprintf(&b, "  upgrade:  to %s (%s), nginx probed every %s, at most %d failed\n", p.Upgrade.To, p.Upgrade.Manifest, p.Upgrade.ProbeInterval, p.Upgrade.MaxFailedProbes)
	}
	if p.Soak.Duration > 0 {
		fmt.Fprintf(&b, "  soak:     %s every %s, availability >= %.2f%%\n", p.Soak.Duration, p.Soak.Interval, p.Soak.MinAvailability)
	}
	fmt.Fprintf(&b, "  expect:   %s\n", p.ExpectText)
	return b.String()
}
