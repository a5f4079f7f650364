// Package diagnose names the root cause of a cell that did not pass, from
// what its phases recorded.
package diagnose

import (
	"strings"

	"github.com/cnimatrix/cnimatrix/internal/archaudit"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

// Root-cause classes.
const (
	ExecFormat    = "exec-format"
	ArchMismatch  = "arch-mismatch"
	ImagePull     = "image-pull"
	CrashLoop     = "crashloop"
	CNINotReady   = "cni-not-ready"
	KernelFeature = "kernel-feature"
	Timeout       = "timeout"
	Connectivity  = "connectivity"
	Infra         = "infrastructure"
	// ArchNotExercised: a CNI workload had no Ready pod on a node of the
	// cell's arch (it ran only on the foreign-arch control plane, say), so
	// the cell proved nothing about its image for the arch.
	ArchNotExercised = "arch-not-exercised"
)

// PreflightPhase is the phase in which the engine audits a cell's images
// for its arch before creating a cluster. Its evidence has Check
// PreflightPhase, the image as Target and the finding's kind as Finding
// (no-variant, mislabeled, ...); it is not OK unless the kind is ok.
const PreflightPhase = "preflight"

// RootCause classifies the first phase that did not pass. It returns "" for
// a passing result. A phase whose step knew the cause (Phase.Cause: a
// kernel without the tunnel's module, an image audit's arch findings, a
// CNI workload that never ran on the arch) has it; the others are
// classified from what the runtime reported (pod states, events, probe
// errors), which Kubernetes and the nodes give as text.
//
// A failure whose text names an image that the preflight audit found
// without a variant for the cell's arch (or holding binaries of another
// machine, unless the runtime said exec format error itself) is an
// arch-mismatch: whatever the runtime made of it (a refused pull, a pod
// stuck pending), that is why.
func RootCause(r matrix.Result) string {
	for _, p := range r.Phases {
		if p.Outcome == matrix.Pass || p.Outcome == matrix.Skipped {
			continue
		}
		if p.Cause != "" {
			return p.Cause
		}
		text := p.Error
		for _, e := range p.Evidence {
			if !e.OK {
				text += "\n" + e.Detail
			}
		}
		if p.Name == PreflightPhase {
			return classifyPreflight(text)
		}
		c := classify(p, text)
		if c == Infra {
			return c
		}
		for _, f := range archFindings(r) {
			if !strings.Contains(text, f.image) {
				continue
			}
			if f.kind == archaudit.NoVariant || c != ExecFormat {
				return ArchMismatch
			}
		}
		return c
	}
	return ""
}

// classifyPreflight names the cause of a failed (strict) preflight: images
// of another arch, or images the audit could not resolve where the nodes
// pull them, which a node would fail to pull too.
func classifyPreflight(text string) string {
	if strings.Contains(text, string(archaudit.NoVariant)+":") || strings.Contains(text, string(archaudit.Mislabeled)+":") || strings.Contains(text, ArchMismatch) {
		return ArchMismatch
	}
	return ImagePull
}

type archFinding struct {
	image string
	kind  archaudit.Kind
}

// archFindings are the preflight's no-variant and mislabeled findings.
func archFindings(r matrix.Result) []archFinding {
	var out []archFinding
	for _, p := range r.Phases {
		if p.Name != PreflightPhase {
			continue
		}
		for _, e := range p.Evidence {
			if e.OK || e.Target == "" {
				continue
			}
			if k := archaudit.Kind(e.Finding); k == archaudit.NoVariant || k == archaudit.Mislabeled {
				out = append(out, archFinding{image: e.Target, kind: k})
			}
		}
	}
	return out
}

func classify(p matrix.Phase, text string) string {
	t := strings.ToLower(text)
	// "after-upgrade check:X" is check:X run again after an upgrade.
	name := p.Name[strings.LastIndex(p.Name, " ")+1:]
	switch {
	case strings.Contains(t, "exec format error"):
		return ExecFormat
	case strings.Contains(t, "no match for platform") || strings.Contains(t, "arch-mismatch"):
		return ArchMismatch
	case strings.Contains(t, "errimagepull") || strings.Contains(t, "imagepullbackoff") || strings.Contains(t, "failed to pull"):
		return ImagePull
	case strings.Contains(t, "crashloopbackoff"):
		return CrashLoop
	case strings.Contains(t, "network plugin not initialized") || strings.Contains(t, "cni plugin not initialized") || strings.Contains(t, "networkpluginnotready"):
		return CNINotReady
	case strings.Contains(t, "kernel-feature:") || strings.Contains(t, "module") && (strings.Contains(t, "not found") || strings.Contains(t, "ipip")):
		return KernelFeature
	case p.Infra:
		return Infra
	case name == "check:CNIWorkloadArch" && strings.Contains(t, ArchNotExercised+":"):
		return ArchNotExercised
	case name == "check:NodeArch":
		// A node that is not the arch it was made as: the harness's own
		// promise (an arm64 cell on arm64 nodes) is broken.
		return ArchMismatch
	case isProbeCheck(name) || name == "upgrade-availability" || name == "soak":
		// Requests that failed while the CNI rolled, or during a soak.
		return Connectivity
	case strings.Contains(t, "deadline exceeded") || strings.Contains(t, "timed out") || strings.Contains(t, "timeout"):
		return Timeout
	}
	return "unclassified"
}

// isProbeCheck reports whether a phase is a reachability check (pod to pod,
// pod to service, DNS, host to NodePort), whose failure is connectivity.
func isProbeCheck(phase string) bool {
	name, ok := strings.CutPrefix(phase, "check:")
	if !ok {
		return false
	}
	n := strings.ToLower(strings.ReplaceAll(name, "-", ""))
	return strings.HasPrefix(n, "podto") || strings.HasPrefix(n, "hostto") || strings.Contains(n, "dns")
}
