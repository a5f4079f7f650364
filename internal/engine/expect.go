package engine

import (
	"fmt"
	"strings"

	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

// CheckExpectation returns nil when the result is what the scenario expects
// (by default: pass), else an error saying how it differs.
func CheckExpectation(want scenario.Expectation, r matrix.Result) error {
	if r.Outcome != want.Outcome {
		return fmt.Errorf("cell %s: outcome %s, want %s (%s)", r.ID, r.Outcome, want.Outcome, r.Reason)
	}
	if want.RootCause != "" && r.RootCause != want.RootCause {
		return fmt.Errorf("cell %s: root cause %q, want %q (%s)", r.ID, r.RootCause, want.RootCause, r.Reason)
	}
	if len(want.Evidence) > 0 {
		text := EvidenceText(r)
		var missing []string
		for _, ev := range want.Evidence {
			if !strings.Contains(text, ev) {
				missing = append(missing, fmt.Sprintf("%q", ev))
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("cell %s: no evidence mentions %s (%s)", r.ID, strings.Join(missing, ", "), r.Reason)
		}
	}
	return nil
}

// EvidenceText is every error and failed observation of a result, one per line.
func EvidenceText(r matrix.Result) string {
	var b strings.Builder
	for _, p := range r.Phases {
		if p.Error != "" {
			fmt.Fprintf(&b, "%s: %s\n", p.Name, p.Error)
		}
		for _, e := range p.Evidence {
			if !e.OK {
				fmt.Fprintf(&b, "%s: %s -> %s: %s\n", p.Name, e.Source, e.Target, e.Detail)
			}
		}
	}
	return b.String()
}

// FilterCells keeps the cells matching every filter. A filter is key=value
// with key one of cni, k8s (or kubernetes), arch, provider, variant, or the
// CNI's name to select its version (e.g. flannel=v0.28.10, calico=v3.32.1).
func FilterCells(cells []matrix.Cell, filters []string) ([]matrix.Cell, error) {
	type f struct{ k, v string }
	var fs []f
	for _, s := range filters {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("filter %q: want key=value (keys: cni, k8s, arch, provider, variant, or <cni>=<version>)", s)
		}
		fs = append(fs, f{k, v})
	}
	var out []matrix.Cell
	for _, c := range cells {
		keep := true
		for _, x := range fs {
			var got string
			switch x.k {
			case "cni":
				got = c.CNI
			case "k8s", "kubernetes":
				got = c.Kubernetes
			case "arch":
				got = c.Arch
			case "provider":
				got = c.Provider
			case "variant":
				got = c.Variant
			case "version", c.CNI:
				got = c.CNIVersion
			default:
				got = "\x00" // a CNI name other than this cell's: no match
			}
			if got != x.v {
				keep = false
			}
		}
		if keep {
			out = append(out, c)
		}
	}
	return out, nil
}
