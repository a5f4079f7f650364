// Package report renders a matrix (the JSON source of truth) as Markdown for
// a pull request or CI summary, and as JUnit for CI systems.
package report

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/catalog"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

var badge = map[matrix.Outcome]string{
	matrix.Pass:       "✅ pass",
	matrix.Fail:       "❌ fail",
	matrix.InfraError: "⚠️ infra-error",
	matrix.Skipped:    "⏭️ skipped",
	matrix.Unknown:    "❔ unknown",
}

// Markdown writes the matrix as a table (rows: CNI versions; columns:
// Kubernetes version x arch x provider) followed by one section per cell that
// did not pass, with its reason and evidence.
func Markdown(w io.Writer, m *matrix.Matrix) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# cnimatrix: %s\n\n", m.Scenario)
	fmt.Fprintf(&b, "%s. Generated %s on %s.\n\n", m.Summary(), m.Generated.Format(time.RFC3339), hostLine(m.Host))

	type colKey struct{ k8s, arch, provider string }
	rows := map[string]bool{}
	cols := map[colKey]bool{}
	cells := map[string]map[colKey][]matrix.Result{}
	for _, r := range m.Results {
		row := r.CNI + " " + r.VersionLabel()
		if r.Variant != "" {
			row += " (" + r.Variant + ")"
		}
		ck := colKey{r.Kubernetes, r.Arch, r.Provider}
		rows[row], cols[ck] = true, true
		if cells[row] == nil {
			cells[row] = map[colKey][]matrix.Result{}
		}
		cells[row][ck] = append(cells[row][ck], r)
	}
	rowNames := keys(rows)
	var colList []colKey
	for c := range cols {
		colList = append(colList, c)
	}
	sort.Slice(colList, func(i, j int) bool {
		a, b := colList[i], colList[j]
		return a.k8s+a.arch+a.provider < b.k8s+b.arch+b.provider
	})
	b.WriteString("| CNI |")
	for _, c := range colList {
		fmt.Fprintf(&b, " k8s %s · %s · %s |", c.k8s, c.arch, c.provider)
	}
	b.WriteString("\n|---|")
	for range colList {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, row := range rowNames {
		fmt.Fprintf(&b, "| %s |", row)
		for _, c := range colList {
			var parts []string
			for _, r := range cells[row][c] {
				s := badge[r.Outcome]
				if r.Fidelity != "" {
					s += " (" + r.Fidelity + ")"
				}
				if r.Images == matrix.ImagesRebuiltFromSource {
					s += " [images " + r.Images + "]"
				}
				if r.ManifestPin == catalog.PinTrustedOnFirstUse {
					s += " [manifest " + r.ManifestPin + "]"
				}
				if r.RootCause != "" && r.Outcome != matrix.Pass {
					s += ": " + r.RootCause
				}
				parts = append(parts, s)
			}
			if len(parts) == 0 {
				parts = []string{"—"}
			}
			fmt.Fprintf(&b, " %s |", strings.Join(parts, "<br>"))
		}
		b.WriteString("\n")
	}

	for _, r := range m.Results {
		fmt.Fprintf(&b, "\n## %s: %s\n\n", r.ID, badge[r.Outcome])
		if r.Reason != "" {
			fmt.Fprintf(&b, "%s\n\n", mdEscape(r.Reason))
		}
		if r.ClusterName != "" || r.Artifacts != "" {
			fmt.Fprintf(&b, "cluster `%s`", r.ClusterName)
			if r.Artifacts != "" {
				fmt.Fprintf(&b, ", artifacts `%s`", r.Artifacts)
			}
			b.WriteString("\n\n")
		}
		if len(r.Phases) == 0 {
			continue
		}
		b.WriteString("| phase | outcome | time | detail |\n|---|---|---|---|\n")
		for _, p := range r.Phases {
			detail := p.Error
			if detail == "" && len(p.Evidence) > 0 {
				detail = fmt.Sprintf("%d observations, %d ok", len(p.Evidence), countOK(p.Evidence))
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", p.Name, p.Outcome, p.Duration().Truncate(100*time.Millisecond), mdEscape(firstLine(detail, 300)))
		}
		if r.Outcome != matrix.Pass {
			var ev []string
			for _, p := range r.Phases {
				for _, e := range p.Evidence {
					if !e.OK {
						ev = append(ev, fmt.Sprintf("- `%s` %s → %s: %s", p.Name, e.Source, e.Target, mdEscape(firstLine(e.Detail, 400))))
					}
				}
			}
			if len(ev) > 0 {
				b.WriteString("\nFailed observations:\n\n" + strings.Join(ev, "\n") + "\n")
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func hostLine(h matrix.Host) string {
	s := h.Arch
	if h.Kernel != "" {
		s += ", kernel " + h.Kernel
	}
	if h.Cgroup != "" {
		s += ", cgroup " + h.Cgroup
	}
	return s
}

func countOK(ev []matrix.Evidence) int {
	n := 0
	for _, e := range ev {
		if e.OK {
			n++
		}
	}
	return n
}

func firstLine(s string, max int) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " …"
	}
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
