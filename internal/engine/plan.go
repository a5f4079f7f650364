package engine

import (
	"fmt"
	"strings"

	"github.com/cnimatrix/cnimatrix/internal/calico"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

// CellPlan is what a cell will do, resolved from its scenario without a
// cluster, a Docker engine or a build: `cnimatrix run --dry-run` prints it.
type CellPlan struct {
	Cell matrix.Cell
	// Skip is why the cell is skipped without a cluster; "" when it runs.
	Skip string
	// Nodes describes the cluster: "control plane amd64 (kind), 1 worker
	// arm64 (QEMU VM)".
	Nodes string
	// Manifest is the file applied, Pin how it is pinned ("" for a
	// local file), Edits what cnimatrix changes in it.
	Manifest, Pin string
	Edits         []string
	// Images are the configured manifest's images and where each comes
	// from (the run's registry mirrors upstream; rebuilt ones are built
	// here first).
	Images []string
	// Checks are the checks' names, in order.
	Checks []string
	// Expect is the expected outcome (and root cause).
	Expect string
}

// Plan resolves a cell's plan. An error is a manifest the cell could not
// apply (it would fail its cni-install).
func Plan(s *scenario.Scenario, cell matrix.Cell) (CellPlan, error) {
	p := CellPlan{Cell: cell}
	want := s.ExpectFor(cell)
	p.Expect = string(want.Outcome)
	if want.RootCause != "" {
		p.Expect += " (" + want.RootCause + ")"
	}
	if sk := s.SkipFor(cell); sk != nil {
		p.Skip = sk.Reason
		return p, nil
	}
	cp := controlPlaneArch(cell)
	workerKind := "kind node"
	if cell.Provider == "qemu" {
		workerKind = "QEMU VM"
	}
	p.Nodes = fmt.Sprintf("control plane %s (kind node), %d worker(s) %s (%s); Kubernetes %s; pods %s, services %s",
		cp, s.Nodes-1, cell.Arch, workerKind, cell.Kubernetes, s.PodSubnet, s.ServiceSub)
	p.Manifest = s.CNI.Manifests[cell.CNIVersion]
	p.Pin = s.CNI.Pins[cell.CNIVersion]
	if s.CNI.Calico != nil {
		o := s.CNI.Calico
		p.Edits = append(p.Edits, "pool CIDR "+o.PodCIDR)
		if o.Encapsulation != "" {
			p.Edits = append(p.Edits, "encapsulation "+string(o.Encapsulation))
		}
		if o.MTU != 0 {
			p.Edits = append(p.Edits, fmt.Sprintf("MTU %d", o.MTU))
		}
		if o.Registry != "" {
			p.Edits = append(p.Edits, "registry "+o.Registry)
		}
	}
	for from, to := range s.CNI.ImageOverrides {
		p.Edits = append(p.Edits, "image "+from+" -> "+to)
	}
	objs, _, err := configuredManifest(p.Manifest, s)
	if err != nil {
		return p, err
	}
	if mixedCluster(cell) {
		pinned, err := pinToArch(objs, cell.Arch)
		if err != nil {
			return p, err
		}
		for _, w := range pinned {
			p.Edits = append(p.Edits, w+" pinned to "+archLabel+"="+cell.Arch)
		}
	}
	for _, im := range calico.Images(objs) {
		from := "pulled through the run's registry (mirror of its upstream)"
		if s.CNI.Images == matrix.ImagesRebuiltFromSource && calicoComponent(im, cell.CNIVersion) != "" {
			from = "rebuilt from " + s.CNI.Sources[cell.CNIVersion].Archive
		}
		p.Images = append(p.Images, im+": "+from)
	}
	for _, c := range cniChecks(s, p.Manifest) {
		p.Checks = append(p.Checks, c.Name())
	}
	return p, nil
}

// String is the plan as a person reads it.
func (p CellPlan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", p.Cell.ID())
	if p.Skip != "" {
		fmt.Fprintf(&b, "  skipped, no cluster: %s\n  expect: %s\n", p.Skip, p.Expect)
		return b.String()
	}
	fmt.Fprintf(&b, "  cluster:  %s\n", p.Nodes)
	pin := p.Pin
	if pin == "" {
		pin = "local file"
	}
	fmt.Fprintf(&b, "  manifest: %s (%s)\n", p.Manifest, pin)
	for _, e := range p.Edits {
		fmt.Fprintf(&b, "  edit:     %s\n", e)
	}
	for _, im := range p.Images {
		fmt.Fprintf(&b, "  image:    %s\n", im)
	}
	fmt.Fprintf(&b, "  checks:   %s\n", strings.Join(p.Checks, ", "))
	fmt.Fprintf(&b, "  expect:   %s\n", p.Expect)
	return b.String()
}
