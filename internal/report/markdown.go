// Package report renders a matrix (the JSON source of truth) as Markdown for
// a pull request or CI summary, and as JUnit for CI systems.
package report

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/catalog"
	"github.com/cnimatrix/cnimatrix/internal/images"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

var badge = map[matrix.Outcome]string{
	matrix.Pass:       "✅ pass",
	matrix.Fail:       "❌ fail",
	matrix.InfraError: "⚠️ infra-error",
	matrix.Skipped:    "⏭️ skipped",
	matrix.Unknown:    "❔ unknown",
}

// Markdown writes the matrix as one table per arch, arm64 first (rows: CNI
// versions; columns: Kubernetes version x provider) with the arch's counts,
// followed by one section per cell with its reason, upstream facts and
// evidence.
func Markdown(w io.Writer, m *matrix.Matrix) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# cnimatrix: %s\n\n", m.Scenario)
	fmt.Fprintf(&b, "%s. Generated %s", m.Summary(), m.Generated.Format(time.RFC3339))
	if h := hostLine(m.Host); h != "" {
		fmt.Fprintf(&b, " on %s", h)
	}
	b.WriteString(".\n")

	arches, byArch := groupByArch(m.Results)
	for _, arch := range arches {
		markdownArch(&b, arch, byArch[arch])
	}
	if len(arches) > 0 {
		b.WriteString("\n## Cells\n")
	}

	for _, r := range m.Results {
		fmt.Fprintf(&b, "\n### %s: %s\n\n", r.ID, badge[r.Outcome])
		if r.Reason != "" {
			fmt.Fprintf(&b, "%s\n\n", mdEscape(r.Reason))
		}
		if up := upstreamOf(r.Cell); up.Tested != "" || len(up.Arm64Notes) > 0 {
			if up.Tested != "" {
				fmt.Fprintf(&b, "Upstream tested on Kubernetes %s: this cell is %s it.\n\n", up.Tested, up.Range)
			}
			for _, n := range up.Arm64Notes {
				fmt.Fprintf(&b, "- arm64 note: %s\n", mdEscape(n))
			}
			if len(up.Arm64Notes) > 0 {
				b.WriteString("\n")
			}
		}
		if r.Installed != "" {
			fmt.Fprintf(&b, "CNI found installed on the cluster: %s\n\n", mdEscape(r.Installed))
		}
		if r.NodeImage != nil {
			fmt.Fprintf(&b, "- node image `%s`: %s\n", r.NodeImage.Image, imageSourceText(*r.NodeImage))
		}
		for _, src := range r.ImageSources {
			fmt.Fprintf(&b, "- image `%s`: %s\n", src.Image, imageSourceText(src))
		}
		if len(r.ImageSources) > 0 || r.NodeImage != nil {
			b.WriteString("\n")
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

// markdownArch writes one arch's counts and table.
func markdownArch(b *strings.Builder, arch string, results []matrix.Result) {
	type colKey struct{ k8s, provider string }
	var rows []string
	var cols []colKey
	cells := map[string]map[colKey][]matrix.Result{}
	for _, r := range results {
		row := r.CNI + " " + r.VersionLabel()
		if r.Variant != "" {
			row += " (" + r.Variant + ")"
		}
		ck := colKey{r.Kubernetes, r.Provider}
		if cells[row] == nil {
			cells[row] = map[colKey][]matrix.Result{}
			rows = append(rows, row)
		}
		if !slices.Contains(cols, ck) {
			cols = append(cols, ck)
		}
		cells[row][ck] = append(cells[row][ck], r)
	}
	slices.SortFunc(rows, compareRows)
	slices.SortFunc(cols, func(a, b colKey) int {
		if c := compareVersions(a.k8s, b.k8s); c != 0 {
			return c
		}
		return strings.Compare(a.provider, b.provider)
	})
	fmt.Fprintf(b, "\n## %s\n\n", arch)
	var counts []string
	for _, c := range outcomeCounts(results) {
		counts = append(counts, fmt.Sprintf("%d %s", c.N, c.Outcome))
	}
	fmt.Fprintf(b, "%d cells: %s.\n\n", len(results), strings.Join(counts, ", "))
	b.WriteString("| CNI |")
	for _, c := range cols {
		fmt.Fprintf(b, " k8s %s · %s |", c.k8s, c.provider)
	}
	b.WriteString("\n|---|")
	for range cols {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, row := range rows {
		fmt.Fprintf(b, "| %s |", row)
		for _, c := range cols {
			var parts []string
			for _, r := range cells[row][c] {
				parts = append(parts, markdownCell(r))
			}
			if len(parts) == 0 {
				parts = []string{"—"}
			}
			fmt.Fprintf(b, " %s |", strings.Join(parts, "<br>"))
		}
		b.WriteString("\n")
	}
}

// compareRows orders "cni version (variant)" rows by CNI, then version numerically.
func compareRows(a, b string) int {
	af, bf := strings.Fields(a), strings.Fields(b)
	if c := strings.Compare(af[0], bf[0]); c != 0 || len(af) < 2 || len(bf) < 2 {
		if c != 0 {
			return c
		}
		return strings.Compare(a, b)
	}
	if c := compareVersions(af[1], bf[1]); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

func markdownCell(r matrix.Result) string {
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
	if up := upstreamOf(r.Cell); up.Range == RangeOutside {
		s += " · untested k8s (upstream " + up.Tested + ")"
	}
	return s
}

// imageSourceText says where an image came from in words: "pulled
// through from https://quay.io".
func imageSourceText(src matrix.ImageSource) string {
	switch {
	case src.Detail == "":
		return src.Source
	case src.Source == images.OriginPulledThrough:
		return src.Source + " from " + src.Detail
	}
	return src.Source + " (" + src.Detail + ")"
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
