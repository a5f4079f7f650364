package engine

import (
	"context"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/cnimatrix/cnimatrix/internal/archaudit"
	"github.com/cnimatrix/cnimatrix/internal/calico"
	"github.com/cnimatrix/cnimatrix/internal/diagnose"
	"github.com/cnimatrix/cnimatrix/internal/logx"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

// Preflight is what a cell does with the audit of its images (internal/
// archaudit) before it creates a cluster.
type Preflight string

const (
	// PreflightWarn records the audit as the phase "preflight" and runs the
	// cell anyway, so the runtime's own outcome still shows.
	PreflightWarn Preflight = "warn"
	// PreflightStrict fails the cell, without creating a cluster, when any
	// image is not ok for the cell's arch (or could not be audited).
	PreflightStrict Preflight = "strict"
	// PreflightOff skips the audit.
	PreflightOff Preflight = "off"
)

// ParsePreflight reads a --preflight value; "" is the default, warn.
func ParsePreflight(s string) (Preflight, error) {
	switch p := Preflight(strings.TrimSpace(s)); p {
	case "":
		return PreflightWarn, nil
	case PreflightWarn, PreflightStrict, PreflightOff:
		return p, nil
	}
	return "", fmt.Errorf("preflight %q: want warn, strict or off", s)
}

// preflightTimeout bounds one cell's audit: the images come from the run's
// own registry, so seconds are the norm.
const preflightTimeout = 3 * time.Minute

// stepPreflight audits the cell's images for its arch where its nodes
// pull them, before any cluster exists (--preflight: warn records, strict
// fails the cell, off skips).
var stepPreflight = Step{Name: diagnose.PreflightPhase,
	Applies: func(c *cellRun) bool { return c.e.opts.Preflight != PreflightOff && !c.plan.installed() }, Run: runPreflight}

func runPreflight(ctx context.Context, c *cellRun) StepResult {
	mode := c.e.opts.Preflight
	if mode == "" {
		mode = PreflightWarn
	}
	ev, rep, err := c.e.preflight(ctx, c.plan, mode)
	c.audit = rep
	if rep != nil && !rep.OK() {
		c.log.Infof("preflight (%s): %s", mode, rep.Summary())
	}
	r := StepResult{Evidence: ev, Err: err}
	if err != nil {
		r.Cause = diagnose.ImagePull // not resolvable where the nodes pull
		if rep != nil && rep.Count(archaudit.NoVariant)+rep.Count(archaudit.Mislabeled) > 0 {
			r.Cause = diagnose.ArchMismatch
		}
	}
	return r
}

// preflight audits the images of the cell's manifest (after the scenario's
// image overrides) for the cell's arch, where the cell's nodes pull them:
// the run's registry. Only in strict mode can it return an error.
func (e *Engine) preflight(ctx context.Context, p *CellPlan, mode Preflight) ([]matrix.Evidence, *archaudit.Report, error) {
	actx, cancel := context.WithTimeout(ctx, preflightTimeout)
	defer cancel()
	paths := []string{p.Manifest}
	if p.Upgrade != nil {
		// The version upgraded to runs on the same nodes: an upgrade to
		// images without this arch is the regression to catch first.
		paths = append(paths, p.Upgrade.Manifest)
	}
	deployed, err := deployedImages(p.cni(), p.Cell)
	var rep *archaudit.Report
	if err == nil {
		rep, err = auditManifest(actx, paths, p.cni(), deployed, p.Cell.Arch, e.registry.Addr(), e.log)
	}
	ev, verr := preflightVerdict(rep, err, p.Cell.Arch, e.registry.Addr(), mode)
	return ev, rep, verr
}

// auditManifest audits every image of the manifests at paths, as the cell
// applies them (configuredManifest: the scenario's overrides and registry
// included), for arch against the registry at addr, which serves upstream
// U's images under U/ (images.Registry's layout).
func auditManifest(ctx context.Context, paths []string, cni *scenario.CNISpec, deployed []archaudit.ImageRef, arch, addr string, log *logx.Logger) (*archaudit.Report, error) {
	var objs []*unstructured.Unstructured
	for _, path := range paths {
		o, _, err := configuredManifest(path, cni)
		if err != nil {
			return nil, err
		}
		objs = append(objs, o...)
	}
	imgs, err := archaudit.ObjectImages(objs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", strings.Join(paths, ", "), err)
	}
	imgs = append(imgs, deployed...)
	return archaudit.Audit(ctx, imgs, arch, archaudit.Options{Mirrors: map[string]string{"*": "http://" + addr}, Log: log})
}

// deployedImages are the images an operator install of the cell's version
// will run (calico.OperatorImages over the files as the cell applies them:
// the release's own custom resources, the registry option included): the
// applied file names only the operator's own image. None for a manifest
// install, or a local operator file of no release version.
func deployedImages(cni *scenario.CNISpec, cell matrix.Cell) ([]archaudit.ImageRef, error) {
	if !operatorInstall(cni) {
		return nil, nil
	}
	if _, err := calico.OperatorDefaultRegistry(cell.CNIVersion); err != nil {
		return nil, nil
	}
	objs, _, err := configuredManifest(cni.Manifests[cell.CNIVersion], cni)
	if err != nil {
		return nil, err
	}
	refs, err := calico.OperatorImages(cell.CNIVersion, objs)
	if err != nil {
		return nil, err
	}
	var out []archaudit.ImageRef
	for _, ref := range refs {
		out = append(out, archaudit.ImageRef{Ref: ref, Workload: "deployed by the operator"})
	}
	return out, nil
}

// preflightVerdict turns an audit into the phase's evidence and, in strict
// mode, its error. Every finding is evidence, ok ones included; a finding
// that is not ok is a failed observation even when warn lets the cell go on.
// The evidence follows diagnose.PreflightPhase's description.
func preflightVerdict(rep *archaudit.Report, auditErr error, arch, addr string, mode Preflight) ([]matrix.Evidence, error) {
	platform := "linux/" + arch
	if rep == nil {
		ev := []matrix.Evidence{{Check: diagnose.PreflightPhase, Source: platform, Target: "registry " + addr, OK: false,
			Detail: "images not audited: " + auditErr.Error()}}
		if mode == PreflightStrict {
			return ev, fmt.Errorf("images not audited for %s: %w", platform, auditErr)
		}
		return ev, nil
	}
	summary := rep.Summary()
	if auditErr != nil {
		summary += " (audit stopped: " + auditErr.Error() + ")"
	}
	if mode == PreflightWarn && !rep.OK() {
		summary += "; warn: the cell runs anyway"
	}
	ev := []matrix.Evidence{{Check: diagnose.PreflightPhase, Source: platform, Target: "registry " + addr, OK: rep.OK() && auditErr == nil, Detail: summary}}
	var arch2, unchecked []string
	for _, f := range rep.Findings {
		ev = append(ev, matrix.Evidence{Check: diagnose.PreflightPhase, Source: platform, Target: f.Image, OK: f.Kind == archaudit.OK,
			Detail: findingDetail(f), LatencyMS: f.Seconds * 1000, Finding: string(f.Kind)})
		line := fmt.Sprintf("%s (%s): %s", f.Image, containerOf(f), f.Reason)
		switch f.Kind {
		case archaudit.NoVariant, archaudit.Mislabeled:
			arch2 = append(arch2, line)
		case archaudit.Error:
			unchecked = append(unchecked, line)
		}
	}
	if mode != PreflightStrict {
		return ev, nil
	}
	switch {
	case len(arch2) > 0:
		return ev, fmt.Errorf("%s: %d of %d images cannot run on %s: %s", diagnose.ArchMismatch, len(arch2), len(rep.Findings), platform, strings.Join(arch2, "; "))
	case len(unchecked) > 0:
		return ev, fmt.Errorf("%d of %d images could not be audited for %s in the registry the nodes pull from: %s", len(unchecked), len(rep.Findings), platform, strings.Join(unchecked, "; "))
	case auditErr != nil:
		return ev, fmt.Errorf("audit for %s stopped: %w", platform, auditErr)
	}
	return ev, nil
}

// findingDetail is "<kind>: <workload> <container>: <reason>", naming the
// offending binaries when the reason does not.
func findingDetail(f archaudit.Finding) string {
	d := fmt.Sprintf("%s: %s %s: %s", f.Kind, f.Workload, containerOf(f), f.Reason)
	for _, b := range f.Offending {
		if !strings.Contains(d, b.Path) {
			d += "; offending " + b.String()
		}
	}
	return d
}

func containerOf(f archaudit.Finding) string {
	if f.InitContainer {
		return "init container " + f.Container
	}
	return "container " + f.Container
}
