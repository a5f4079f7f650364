package engine

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/archaudit"
	"github.com/cnimatrix/cnimatrix/internal/diagnose"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

// KubernetesAPIPhase is the phase of a skipped cell that says which APIs of
// its manifest its Kubernetes no longer serves.
const KubernetesAPIPhase = "kubernetes-api"

// skipAuditMirrors, when set, is where a skipped cell's audit reads the
// images instead of their registries (tests).
var skipAuditMirrors map[string]string

// skipCell records a cell that cannot run (scenario.SkipFor): the outcome
// skipped with the reason, no cluster, and, unless the preflight is off,
// the audit of the catalog's images of its version for its arch. The nodes
// would never pull those images from the run's registry, so they are
// audited where they live (quay.io, docker.io): offline that fails, and the
// phase says the images were not audited rather than pass. The audit never
// changes the outcome: the cell cannot run whatever its images hold.
func (e *Engine) skipCell(ctx context.Context, run *cellRun, sk *scenario.Skip) {
	res, cell := run.result, run.plan.Cell
	res.Outcome, res.Reason = matrix.Skipped, sk.Reason
	res.Fidelity = "" // no node ran anything
	p := matrix.Phase{Name: KubernetesAPIPhase, Outcome: matrix.Skipped, Start: time.Now(), Error: sk.Reason}
	for _, r := range sk.Removed {
		d := fmt.Sprintf("removed in Kubernetes %s; the %s %s manifest uses it", r.Removed, cell.CNI, cell.CNIVersion)
		if r.Use != "" {
			d += " (successor: " + r.Use + ")"
		}
		p.Evidence = append(p.Evidence, matrix.Evidence{Check: KubernetesAPIPhase, Source: "Kubernetes " + cell.Kubernetes, Target: r.API.String(), Detail: d})
	}
	res.Phases = append(res.Phases, p)
	if e.opts.Preflight != PreflightOff {
		start := time.Now()
		done := run.log.Phase(diagnose.PreflightPhase)
		ph := skipAudit(ctx, sk.Images, cell.Arch, archaudit.Options{Mirrors: skipAuditMirrors, Log: e.log})
		var err error
		if ph.Outcome != matrix.Pass {
			err = fmt.Errorf("%s: %s", ph.Outcome, ph.Error)
		}
		done(err)
		ph.Start, ph.DurationMS = start, since(start)
		res.Phases = append(res.Phases, ph)
	}
	run.record(matrix.Phase{Name: "cluster", Outcome: matrix.Skipped, Start: time.Now(), Error: "not created: " + sk.Reason})
	run.log.Infof("skipped: %s", sk.Reason)
}

// skipAudit audits images for arch as the preflight phase of a skipped
// cell: pass when every image is ok, fail when one has no variant for the
// arch or holds another machine's binaries, unknown when one could not be
// audited (unreachable registry, unknown tag). Every finding is evidence.
func skipAudit(ctx context.Context, imgs []string, arch string, opts archaudit.Options) matrix.Phase {
	actx, cancel := context.WithTimeout(ctx, preflightTimeout)
	defer cancel()
	var refs []archaudit.ImageRef
	for _, im := range imgs {
		refs = append(refs, archaudit.ImageRef{Ref: im, Workload: "catalog"})
	}
	where := "the images' registries"
	if len(opts.Mirrors) > 0 {
		where = "mirror " + opts.Mirrors["*"]
	}
	platform := "linux/" + arch
	p := matrix.Phase{Name: diagnose.PreflightPhase}
	rep, err := archaudit.Audit(actx, refs, arch, opts)
	if rep == nil {
		p.Outcome, p.Error = matrix.Unknown, fmt.Sprintf("catalog images not audited for %s: %v", platform, err)
		p.Evidence = []matrix.Evidence{{Check: diagnose.PreflightPhase, Source: platform, Target: where, Detail: p.Error}}
		return p
	}
	summary := rep.Summary() + " (the catalog's images; the cell is skipped)"
	if err != nil {
		summary += " (audit stopped: " + err.Error() + ")"
	}
	p.Evidence = []matrix.Evidence{{Check: diagnose.PreflightPhase, Source: platform, Target: where, OK: rep.OK() && err == nil, Detail: summary}}
	var arch2, unchecked []string
	for _, f := range rep.Findings {
		p.Evidence = append(p.Evidence, matrix.Evidence{Check: diagnose.PreflightPhase, Source: platform, Target: f.Image, OK: f.Kind == archaudit.OK,
			Detail: fmt.Sprintf("%s: %s", f.Kind, f.Reason), LatencyMS: f.Seconds * 1000, Finding: string(f.Kind)})
		switch f.Kind {
		case archaudit.NoVariant, archaudit.Mislabeled:
			arch2 = append(arch2, f.Image+": "+f.Reason)
		case archaudit.Error:
			unchecked = append(unchecked, f.Image+": "+f.Reason)
		}
	}
	switch {
	case len(arch2) > 0:
		p.Outcome, p.Cause = matrix.Fail, diagnose.ArchMismatch
		p.Error = fmt.Sprintf("%s: %d of %d images cannot run on %s: %s", diagnose.ArchMismatch, len(arch2), len(rep.Findings), platform, strings.Join(arch2, "; "))
		if len(unchecked) > 0 {
			p.Error += fmt.Sprintf("; %d not audited: %s", len(unchecked), strings.Join(unchecked, "; "))
		}
	case len(unchecked) > 0:
		p.Outcome = matrix.Unknown
		p.Error = fmt.Sprintf("%d of %d images not audited for %s: %s", len(unchecked), len(rep.Findings), platform, strings.Join(unchecked, "; "))
	case err != nil:
		p.Outcome, p.Error = matrix.Unknown, fmt.Sprintf("audit for %s stopped: %v", platform, err)
	default:
		p.Outcome = matrix.Pass
	}
	return p
}
