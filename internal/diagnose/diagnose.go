// Package diagnose names the root cause of a cell that did not pass, from
// what its phases recorded.
package diagnose

import (
	"strings"

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
)

// RootCause classifies the first phase that did not pass. It returns "" for
// a passing result.
func RootCause(r matrix.Result) string {
	for _, p := range r.Phases {
		if p.Outcome == matrix.Pass || p.Outcome == matrix.Skipped {
			continue
		}
		text := p.Error
		for _, e := range p.Evidence {
			if !e.OK {
				text += "\n" + e.Detail
			}
		}
		return classify(p, text)
	}
	return ""
}

func classify(p matrix.Phase, text string) string {
	t := strings.ToLower(text)
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
	case strings.Contains(t, "module") && (strings.Contains(t, "not found") || strings.Contains(t, "ipip")):
		return KernelFeature
	case p.Infra:
		return Infra
	case p.Name == "check:NodeArch":
		// A node that is not the arch it was made as: the harness's own
		// promise (an arm64 cell on arm64 nodes) is broken.
		return ArchMismatch
	case isProbeCheck(p.Name):
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
