package report

import (
	"fmt"
	"html/template"
	"io"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/semver"

	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

// outcomeColour is the fill of a cell per outcome. The CSS is built from it,
// and the browser test looks for these colours in the screenshot.
var outcomeColour = map[matrix.Outcome]string{
	matrix.Pass:       "#1a7f37",
	matrix.Fail:       "#cf222e",
	matrix.InfraError: "#c4580a",
	matrix.Skipped:    "#6e7781",
	matrix.Unknown:    "#d0d7de", // with lighter stripes
}

// HTML writes the matrix as one self-contained page (inline CSS, no script,
// no external assets): a coloured table of cells, each linking to a section
// with its reason, evidence, artifacts and phase timings. Artifacts paths
// are linked as they are (relative paths stay relative to wherever the page
// is opened from); Render and WriteAll, which know where the page goes, link
// a folder beside the page relative to it.
func HTML(w io.Writer, m *matrix.Matrix) error {
	return writeHTML(w, m, "")
}

// HTMLDiff writes the current matrix's page with the diff against a
// baseline drawn on it: a cell that regressed (passed in the baseline, does
// not pass now, and no expectation accepts it) is outlined and says what it
// was, as is a cell that was fixed; the summary line is the diff's.
func HTMLDiff(w io.Writer, current *matrix.Matrix, d *matrix.DiffReport) error {
	p, err := buildPage(current, "")
	if err != nil {
		return err
	}
	mark := func(changes []matrix.Change, kind string) {
		for _, ch := range changes {
			for _, c := range p.Cells {
				if c.ID == ch.ID {
					c.Change, c.Was = kind, outcomeWithCause(ch.Before, ch.BeforeCause)
				}
			}
		}
	}
	mark(d.Regressed, "regressed")
	mark(d.Fixed, "fixed")
	p.Summary = d.Summary()
	if err := pageTemplate.Execute(w, p); err != nil {
		return fmt.Errorf("render html: %w", err)
	}
	return nil
}

func outcomeWithCause(o matrix.Outcome, cause string) string {
	if cause == "" || o == matrix.Pass {
		return string(o)
	}
	return string(o) + " " + cause
}

// writeHTML is HTML for a page saved in pageDir ("" when unknown).
func writeHTML(w io.Writer, m *matrix.Matrix, pageDir string) error {
	p, err := buildPage(m, pageDir)
	if err != nil {
		return err
	}
	if err := pageTemplate.Execute(w, p); err != nil {
		return fmt.Errorf("render html: %w", err)
	}
	return nil
}

type htmlPage struct {
	Scenario, Summary, Generated, Host string
	CSS                                template.CSS
	Counts                             []htmlCount
	Blocks                             []htmlBlock
	Cells                              []*htmlCell
}

type htmlCount struct {
	Outcome string
	N       int
}

// htmlBlock is one arch's table: rows CNI versions, columns Kubernetes
// versions (split by provider when the arch has more than one).
type htmlBlock struct {
	Arch   string
	Counts []htmlCount
	Groups []htmlGroup
	Cols   []htmlCol
	Rows   []htmlRow
	// Providers is true when a second header row names each column's provider.
	Providers bool
}

// htmlGroup is a Kubernetes version heading spanning its provider columns.
type htmlGroup struct {
	Kubernetes string
	Span       int
}

type htmlCol struct{ Kubernetes, Provider string }

type htmlRow struct {
	CNI, Version, Variant string
	// Cells has one entry per column, nil where the matrix has no such cell.
	Cells []*htmlCell
}

type htmlCell struct {
	matrix.Cell
	ID, Anchor, Outcome, Fidelity, Images, ManifestPin, RootCause, Reason string
	// ImageSources: "quay.io/calico/node:v3.32.1: pulled-through from
	// https://quay.io"; NodeImage says the same of the kind node image.
	ImageSources                                []string
	NodeImage                                   string
	Duration, ClusterName, Installed, Artifacts string
	ArtifactsURL                                template.URL
	Phases                                      []htmlPhase
	Evidence                                    []htmlEvidence
	EvidenceOK                                  int
	Span                                        string
	// Tested is the Kubernetes range the release was tested on upstream,
	// Range whether this cell is inside it; Arm64Notes are the catalog's.
	Tested, Range string
	Arm64Notes    []string
	// Change is "regressed" or "fixed" against a baseline, when one is given.
	Change, Was string
}

type htmlPhase struct {
	Name, Outcome, Duration, Error string
	Infra                          bool
	Width                          template.CSS
}

type htmlEvidence struct {
	Check, Source, Target, Detail, Measure string
	OK                                     bool
}

func buildPage(m *matrix.Matrix, pageDir string) (*htmlPage, error) {
	p := &htmlPage{
		Scenario: m.Scenario,
		Summary:  m.Summary(),
		Host:     hostLine(m.Host),
		CSS:      pageCSS(),
	}
	if !m.Generated.IsZero() {
		p.Generated = m.Generated.UTC().Format(time.RFC3339)
	}
	p.Counts = outcomeCounts(m.Results)
	arches, byArch := groupByArch(m.Results)
	// Details follow the tables' reading order, so the page reads top to bottom.
	for _, arch := range arches {
		b, err := buildBlock(arch, byArch[arch], pageDir)
		if err != nil {
			return nil, err
		}
		for _, row := range b.Rows {
			for _, c := range row.Cells {
				if c != nil {
					p.Cells = append(p.Cells, c)
				}
			}
		}
		p.Blocks = append(p.Blocks, b)
	}
	return p, nil
}

func outcomeCounts(results []matrix.Result) []htmlCount {
	n := map[matrix.Outcome]int{}
	for _, r := range results {
		n[r.Outcome]++
	}
	var out []htmlCount
	for _, o := range outcomeOrder {
		out = append(out, htmlCount{string(o), n[o]})
	}
	return out
}

// buildBlock lays out one arch's results.
func buildBlock(arch string, results []matrix.Result, pageDir string) (htmlBlock, error) {
	b := htmlBlock{Arch: arch, Counts: outcomeCounts(results)}
	type rowKey struct{ cni, version, variant string }
	var rows []rowKey
	var cols []htmlCol
	providers := map[string]bool{}
	at := map[rowKey]map[htmlCol]*htmlCell{}
	for _, r := range results {
		rk := rowKey{r.CNI, r.VersionLabel(), r.Variant}
		ck := htmlCol{r.Kubernetes, r.Provider}
		providers[r.Provider] = true
		if at[rk] == nil {
			at[rk] = map[htmlCol]*htmlCell{}
			rows = append(rows, rk)
		}
		if !slices.Contains(cols, ck) {
			cols = append(cols, ck)
		}
		if prev := at[rk][ck]; prev != nil {
			// One table cell per matrix cell: a second result would have to hide one of the two.
			return b, fmt.Errorf("render html: cell %s has two results in the matrix", prev.ID)
		}
		at[rk][ck] = newHTMLCell(r, pageDir)
	}
	b.Providers = len(providers) > 1
	slices.SortFunc(rows, func(a, b rowKey) int {
		if c := strings.Compare(a.cni, b.cni); c != 0 {
			return c
		}
		if c := compareVersions(a.version, b.version); c != 0 {
			return c
		}
		return strings.Compare(a.variant, b.variant)
	})
	slices.SortFunc(cols, func(a, b htmlCol) int {
		if c := compareVersions(a.Kubernetes, b.Kubernetes); c != 0 {
			return c
		}
		return strings.Compare(a.Provider, b.Provider)
	})
	b.Cols = cols
	for _, c := range cols {
		if n := len(b.Groups); n > 0 && b.Groups[n-1].Kubernetes == c.Kubernetes {
			b.Groups[n-1].Span++
			continue
		}
		b.Groups = append(b.Groups, htmlGroup{c.Kubernetes, 1})
	}
	for _, rk := range rows {
		row := htmlRow{CNI: rk.cni, Version: rk.version, Variant: rk.variant}
		for _, ck := range cols {
			row.Cells = append(row.Cells, at[rk][ck])
		}
		b.Rows = append(b.Rows, row)
	}
	return b, nil
}

func imageSourceLines(srcs []matrix.ImageSource) []string {
	var out []string
	for _, src := range srcs {
		out = append(out, src.Image+": "+imageSourceText(src))
	}
	return out
}

func newHTMLCell(r matrix.Result, pageDir string) *htmlCell {
	c := &htmlCell{
		Cell:         r.Cell,
		ID:           r.ID,
		Anchor:       "cell-" + anchorSafe(r.ID),
		Outcome:      string(r.Outcome),
		Fidelity:     r.Fidelity,
		Images:       r.Images,
		ManifestPin:  r.ManifestPin,
		ImageSources: imageSourceLines(r.ImageSources),
		Reason:       r.Reason,
		ClusterName:  r.ClusterName,
		Installed:    r.Installed,
		Artifacts:    r.Artifacts,
	}
	if r.NodeImage != nil {
		c.NodeImage = r.NodeImage.Image + ": " + imageSourceText(*r.NodeImage)
	}
	if c.ID == "" {
		c.ID = r.Cell.ID()
		c.Anchor = "cell-" + anchorSafe(c.ID)
	}
	if r.Outcome != matrix.Pass {
		c.RootCause = r.RootCause
	}
	if r.DurationMS > 0 {
		c.Duration = fmtDuration(r.DurationMS)
	}
	up := upstreamOf(r.Cell)
	c.Tested, c.Range, c.Arm64Notes = up.Tested, up.Range, up.Arm64Notes
	if r.Artifacts != "" {
		c.ArtifactsURL = artifactsURL(r.Artifacts, pageDir)
	}
	// The phases as a timeline: each bar starts at its phase's offset from
	// the cell's first phase, on a track as long as the cell's whole span,
	// so overlapping work and idle waits show. A matrix without phase start
	// times (older files) gets bars by duration, all from the left.
	t0, span := timelineSpan(r.Phases)
	if span > 0 {
		c.Span = fmtDuration(span)
	}
	for _, ph := range r.Phases {
		hp := htmlPhase{Name: ph.Name, Outcome: string(ph.Outcome), Duration: fmtDuration(ph.DurationMS), Error: ph.Error, Infra: ph.Infra}
		left, pct := 0.0, 0.0
		if span > 0 {
			if !t0.IsZero() {
				left = 100 * float64(ph.Start.Sub(t0).Milliseconds()) / span
			}
			pct = 100 * ph.DurationMS / span
		}
		// A phase of a few milliseconds still gets a visible sliver.
		pct = max(pct, 0.4)
		left = min(max(left, 0), 100-pct)
		hp.Width = template.CSS(fmt.Sprintf("margin-left:%.1f%%;width:%.1f%%", left, pct))
		c.Phases = append(c.Phases, hp)
		for _, e := range ph.Evidence {
			check := e.Check
			if check == "" {
				check = ph.Name
			}
			var measure []string
			if e.LatencyMS > 0 {
				measure = append(measure, fmtDuration(e.LatencyMS))
			}
			if e.Attempts > 1 {
				measure = append(measure, fmt.Sprintf("%d attempts", e.Attempts))
			}
			c.Evidence = append(c.Evidence, htmlEvidence{
				Check: check, Source: e.Source, Target: e.Target, Detail: e.Detail,
				Measure: strings.Join(measure, ", "), OK: e.OK,
			})
			if e.OK {
				c.EvidenceOK++
			}
		}
	}
	return c
}

// timelineSpan is the first phase start and the milliseconds from it to
// the last phase end; t0 is zero when some phase has no start time, and the
// span is then the longest phase (bars by duration only).
func timelineSpan(phases []matrix.Phase) (t0 time.Time, spanMS float64) {
	longest := 0.0
	for _, ph := range phases {
		longest = max(longest, ph.DurationMS)
	}
	var end time.Time
	for _, ph := range phases {
		if ph.Start.IsZero() {
			return time.Time{}, longest
		}
		if t0.IsZero() || ph.Start.Before(t0) {
			t0 = ph.Start
		}
		if e := ph.Start.Add(time.Duration(ph.DurationMS * float64(time.Millisecond))); e.After(end) {
			end = e
		}
	}
	if t0.IsZero() {
		return t0, longest
	}
	return t0, max(float64(end.Sub(t0).Milliseconds()), longest)
}

// artifactsURL links an artifacts folder inside the page's folder relative
// to the page, so the link survives copying the output folder as a whole
// (e.g. a CI artifact download). A folder elsewhere is linked by its
// absolute file:// URL: a chain of ../ would break as soon as either moved.
func artifactsURL(path, pageDir string) template.URL {
	if pageDir != "" {
		absPage, err1 := filepath.Abs(pageDir)
		absArt, err2 := filepath.Abs(path)
		if err1 == nil && err2 == nil {
			path = absArt
			if rel, err := filepath.Rel(absPage, absArt); err == nil && filepath.IsLocal(rel) {
				path = rel
			}
		}
	}
	u := url.URL{Path: filepath.ToSlash(path)}
	if filepath.IsAbs(path) {
		u.Scheme = "file"
	}
	s := u.String()
	if !strings.HasSuffix(s, "/") {
		// A folder: the trailing slash makes the browser list it rather than guess.
		s += "/"
	}
	// The value is built by url.URL from a path, so it has no scheme a page
	// could be attacked with; html/template still escapes it for the attribute.
	return template.URL(s)
}

// anchorSafe keeps fragment identifiers to characters that need no escaping.
func anchorSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '-'
	}, s)
}

// compareVersions orders semantic versions numerically (v1.9 before v1.10)
// and anything else as text after them.
func compareVersions(a, b string) int {
	va, vb := semver.IsValid(a), semver.IsValid(b)
	switch {
	case va && vb:
		if c := semver.Compare(a, b); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	case va:
		return -1
	case vb:
		return 1
	}
	return strings.Compare(a, b)
}

func fmtDuration(ms float64) string {
	d := time.Duration(ms * float64(time.Millisecond))
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.2fms", ms)
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func pageCSS() template.CSS {
	r := strings.NewReplacer(
		"$pass", outcomeColour[matrix.Pass],
		"$fail", outcomeColour[matrix.Fail],
		"$infra", outcomeColour[matrix.InfraError],
		"$skipped", outcomeColour[matrix.Skipped],
		"$unknown", outcomeColour[matrix.Unknown],
	)
	return template.CSS(r.Replace(cssText))
}

const cssText = `
*{box-sizing:border-box}
body{margin:0;background:#f6f8fa;color:#1f2328;font:14px/1.45 system-ui,-apple-system,"Segoe UI","DejaVu Sans",Arial,sans-serif}
main{max-width:1400px;margin:0 auto;padding:20px 28px 48px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:28px 0 10px}
code,.mono{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12.5px}
.meta{color:#57606a;margin:0 0 12px}
.counts{display:flex;flex-wrap:wrap;gap:8px;margin:10px 0 18px;padding:0;list-style:none}
.counts li{padding:3px 10px;border-radius:12px;font-weight:600;font-size:13px}
.counts li.zero{opacity:.4}
.o-pass{--c:$pass}.o-fail{--c:$fail}.o-infra-error{--c:$infra}.o-skipped{--c:$skipped}.o-unknown{--c:$unknown}
.fill{background:var(--c,$unknown);color:#fff}
.fill.o-unknown{background:repeating-linear-gradient(135deg,$unknown 0 7px,#eef1f4 7px 14px);color:#424a53}
table.matrix{border-collapse:separate;border-spacing:4px;background:#fff;border:1px solid #e1e4e8;border-radius:8px;padding:6px}
table.matrix th{font-weight:600;padding:6px 10px;text-align:center;white-space:nowrap}
table.matrix thead th{background:#f6f8fa;border-radius:4px}
table.matrix thead tr.k8s th{font-size:14px}
table.matrix thead tr.platform th{font-size:12.5px;color:#424a53;font-weight:500}
table.matrix th.corner{background:none;text-align:left;vertical-align:bottom;color:#57606a}
table.matrix tbody th{text-align:left;background:#f6f8fa;border-radius:4px}
.cni{font-weight:700}
.variant{display:inline-block;margin-left:6px;padding:0 6px;border-radius:8px;background:#ddf4ff;color:#0969da;font-size:12px;font-weight:500}
td.cell{min-width:150px;padding:0;border-radius:6px;text-align:center;vertical-align:middle}
td.cell a{display:block;padding:8px 10px;color:inherit;text-decoration:none;border-radius:6px}
td.cell a:hover,td.cell a:focus{outline:3px solid #0969da;outline-offset:-3px}
td.cell .outcome{display:block;font-weight:700;font-size:15px;letter-spacing:.04em;text-transform:uppercase}
td.cell .fidelity{display:block;font-size:12px;opacity:.92}
td.cell .fidelity.vm-emulated{font-style:italic}
td.cell .cause{display:inline-block;margin-top:3px;padding:0 6px;border-radius:4px;background:rgba(255,255,255,.22);font-size:12px;font-weight:600}
td.cell.o-unknown .cause{background:rgba(0,0,0,.08)}
td.cell .time{display:block;font-size:11.5px;opacity:.85}
td.cell .range,td.cell .notes{display:block;font-size:11.5px;font-style:italic;opacity:.92}
td.cell .change{display:block;font-size:12px;font-weight:700}
td.cell.regressed{outline:4px solid #8250df;outline-offset:-4px}
td.cell.fixed{outline:4px dashed #0969da;outline-offset:-4px}
section.arch h2{margin-bottom:4px}
dd.arm64-notes ul{margin:0;padding-left:18px}
td.none{color:#8c959f;text-align:center;background:#fff;border:1px dashed #e1e4e8;border-radius:6px}
.legend{margin:10px 0 0;color:#57606a;font-size:12.5px}
section.detail{background:#fff;border:1px solid #d0d7de;border-left:6px solid var(--c);border-radius:8px;padding:12px 18px 14px;margin:0 0 14px}
section.detail:target{box-shadow:0 0 0 3px #0969da55}
section.detail h3{margin:0 0 8px;font-size:15px;display:flex;align-items:center;gap:10px;flex-wrap:wrap}
section.detail h3 .badge{padding:1px 9px;border-radius:10px;font-size:12.5px;text-transform:uppercase;letter-spacing:.04em}
section.detail h3 .top{margin-left:auto;font-size:12px;font-weight:400}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:0 0 10px}
dl.facts dt{color:#57606a}
dl.facts dd{margin:0;overflow-wrap:anywhere}
.reason{white-space:pre-wrap;overflow-wrap:anywhere;background:#fff8c5;border:1px solid #eed888;border-radius:6px;padding:6px 10px;margin:0 0 10px}
.o-pass .reason,.o-skipped .reason,.o-unknown .reason{background:#f6f8fa;border-color:#d0d7de}
h4{font-size:13px;margin:12px 0 6px;color:#424a53}
.phases{display:grid;grid-template-columns:230px minmax(200px,1fr) 72px 140px;gap:3px 10px;align-items:center;font-size:12.5px}
.phases .mono{overflow-wrap:anywhere}
.phases .track{background:#eaeef2;border-radius:3px;height:14px;overflow:hidden}
.phases .bar{height:100%;border-radius:3px;background:var(--c)}
.phases .bar.o-unknown{background:repeating-linear-gradient(135deg,#afb8c1 0 4px,$unknown 4px 8px)}
.phases .dur{text-align:right;font-variant-numeric:tabular-nums}
.phases .pout{color:var(--c);font-weight:600}
.phases .perr{grid-column:2 / -1;color:#82071e;white-space:pre-wrap;overflow-wrap:anywhere;margin:-1px 0 4px}
details summary{cursor:pointer;color:#424a53;font-weight:600;font-size:13px;margin:12px 0 6px}
table.evidence{border-collapse:collapse;width:100%;font-size:12.5px;table-layout:auto}
table.evidence th{text-align:left;color:#57606a;font-weight:600;border-bottom:1px solid #d0d7de;padding:3px 8px}
table.evidence td{border-bottom:1px solid #eaeef2;padding:3px 8px;vertical-align:top;overflow-wrap:anywhere}
table.evidence tr.bad td{background:#ffebe9}
table.evidence td.ok{white-space:nowrap;font-weight:700}
table.evidence td.check{white-space:nowrap}
table.evidence tr.good td.ok{color:$pass}
table.evidence tr.bad td.ok{color:$fail}
table.evidence td.measure{white-space:nowrap;color:#57606a}
.arrow{color:#8c959f;padding:0 4px}
`

var pageTemplate = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cnimatrix: {{.Scenario}}</title>
<style>{{.CSS}}</style>
</head>
<body>
<main>
<h1 id="matrix">cnimatrix: {{.Scenario}}</h1>
<p class="meta">{{.Summary}}.{{if .Generated}} Generated {{.Generated}}{{end}}{{if .Host}} on {{.Host}}{{end}}.</p>
<ul class="counts">{{range .Counts}}<li class="fill o-{{.Outcome}}{{if not .N}} zero{{end}}" data-count="{{.Outcome}}">{{.N}} {{.Outcome}}</li>{{end}}</ul>
{{range .Blocks}}<section class="arch" id="arch-{{.Arch}}" data-arch="{{.Arch}}">
<h2>{{.Arch}}</h2>
<ul class="counts">{{range .Counts}}<li class="fill o-{{.Outcome}}{{if not .N}} zero{{end}}" data-arch-count="{{.Outcome}}">{{.N}} {{.Outcome}}</li>{{end}}</ul>
<table class="matrix" data-arch="{{.Arch}}">
<thead>
<tr class="k8s"><th class="corner"{{if .Providers}} rowspan="2"{{end}} scope="col">CNI</th>{{range .Groups}}<th colspan="{{.Span}}" scope="colgroup">Kubernetes {{.Kubernetes}}</th>{{end}}</tr>
{{if .Providers}}<tr class="platform">{{range .Cols}}<th scope="col" data-col="{{.Kubernetes}}/{{.Provider}}">{{.Provider}}</th>{{end}}</tr>
{{end}}</thead>
<tbody>
{{range .Rows}}<tr>
<th scope="row"><span class="cni">{{.CNI}}</span> <span class="mono">{{.Version}}</span>{{if .Variant}}<span class="variant">{{.Variant}}</span>{{end}}</th>
{{range .Cells}}{{if .}}<td class="cell fill o-{{.Outcome}}{{if .Change}} {{.Change}}{{end}}" data-cell="{{.ID}}" data-outcome="{{.Outcome}}"{{if .Fidelity}} data-fidelity="{{.Fidelity}}"{{end}}{{if .RootCause}} data-root-cause="{{.RootCause}}"{{end}}{{if .Range}} data-range="{{.Range}}"{{end}}{{if .Change}} data-change="{{.Change}}"{{end}}><a href="#{{.Anchor}}" title="{{.ID}}{{if .Tested}} (upstream tested on Kubernetes {{.Tested}}){{end}}"><span class="outcome">{{.Outcome}}</span>{{if .Change}}<span class="change">{{.Change}} (was {{.Was}})</span>{{end}}{{if .Fidelity}}<span class="fidelity {{.Fidelity}}">{{.Fidelity}}</span>{{end}}{{if .RootCause}}<span class="cause">{{.RootCause}}</span>{{end}}{{if eq .Range "outside"}}<span class="range">untested k8s</span>{{end}}{{if .Arm64Notes}}<span class="notes">{{len .Arm64Notes}} arm64 note{{if gt (len .Arm64Notes) 1}}s{{end}}</span>{{end}}{{if .Duration}}<span class="time">{{.Duration}}</span>{{end}}</a></td>
{{else}}<td class="none">—</td>
{{end}}{{end}}</tr>
{{end}}</tbody>
</table>
</section>
{{end}}<p class="legend">One table per architecture, arm64 first. Each cell links to its details below. <b>untested k8s</b>: the Kubernetes version is outside the range the CNI release was tested on upstream. <b>native</b>: nodes run on the host's CPU; <i>vm-emulated</i>: nodes are QEMU full-system VMs of another architecture.</p>

<h2>Cells</h2>
{{range .Cells}}<section class="detail o-{{.Outcome}}" id="{{.Anchor}}" data-detail="{{.ID}}">
<h3><code>{{.ID}}</code> <span class="badge fill o-{{.Outcome}}">{{.Outcome}}</span><a class="top" href="#matrix">↑ matrix</a></h3>
<dl class="facts">
<dt>CNI</dt><dd>{{.CNI}} {{.VersionLabel}}{{if .Variant}} ({{.Variant}}){{end}}</dd>
<dt>Kubernetes</dt><dd>{{.Kubernetes}} · {{.Arch}} · {{.Provider}}</dd>
{{if .Fidelity}}<dt>Fidelity</dt><dd>{{.Fidelity}}</dd>
{{end}}{{if .Images}}<dt>CNI images</dt><dd class="images">{{.Images}}</dd>
{{end}}{{if .NodeImage}}<dt>Node image</dt><dd class="node-image"><code>{{.NodeImage}}</code></dd>
{{end}}{{if .ImageSources}}<dt>Image sources</dt><dd class="image-sources"><ul>{{range .ImageSources}}<li><code>{{.}}</code></li>{{end}}</ul></dd>
{{end}}{{if .ManifestPin}}<dt>Manifest</dt><dd class="manifest-pin">{{.ManifestPin}}</dd>
{{end}}{{if .Tested}}<dt>Upstream tested</dt><dd class="tested" data-range="{{.Range}}">Kubernetes {{.Tested}}{{if eq .Range "outside"}} (this cell is outside it){{else}} (this cell is inside it){{end}}</dd>
{{end}}{{if .Change}}<dt>Against baseline</dt><dd class="change">{{.Change}}: was {{.Was}}</dd>
{{end}}{{if .Arm64Notes}}<dt>arm64 notes</dt><dd class="arm64-notes"><ul>{{range .Arm64Notes}}<li>{{.}}</li>{{end}}</ul></dd>
{{end}}{{if .RootCause}}<dt>Root cause</dt><dd><strong>{{.RootCause}}</strong></dd>
{{end}}{{if .Duration}}<dt>Duration</dt><dd>{{.Duration}}</dd>
{{end}}{{if .ClusterName}}<dt>Cluster</dt><dd><code>{{.ClusterName}}</code></dd>
{{end}}{{if .Installed}}<dt>CNI found installed</dt><dd>{{.Installed}}</dd>
{{end}}{{if .Artifacts}}<dt>Artifacts</dt><dd><a class="artifacts" href="{{.ArtifactsURL}}"><code>{{.Artifacts}}</code></a></dd>
{{end}}</dl>
{{if .Reason}}<div class="reason">{{.Reason}}</div>
{{end}}{{if .Phases}}<h4>Phases{{if .Span}} <span class="meta">(timeline: each bar at its start, to scale; {{.Span}} in all)</span>{{end}}</h4>
<div class="phases">{{range .Phases}}
<span class="mono">{{.Name}}</span><div class="track"><div class="bar o-{{.Outcome}}" style="{{.Width}}" data-phase="{{.Name}}"></div></div><span class="dur">{{.Duration}}</span><span class="pout o-{{.Outcome}}">{{.Outcome}}{{if and .Infra (ne .Outcome "pass")}} (infra){{end}}</span>{{if .Error}}
<div class="perr">{{.Error}}</div>{{end}}{{end}}
</div>
{{else}}<p class="meta">No phase ran.</p>
{{end}}{{if .Evidence}}<details{{if ne .Outcome "pass"}} open{{end}}>
<summary>Evidence: {{len .Evidence}} observations, {{.EvidenceOK}} ok</summary>
<table class="evidence">
<thead><tr><th>check</th><th>source → target</th><th>ok</th><th>detail</th><th></th></tr></thead>
<tbody>
{{range .Evidence}}<tr class="{{if .OK}}good{{else}}bad{{end}}"><td class="mono check">{{.Check}}</td><td>{{.Source}}{{if and .Source .Target}}<span class="arrow">→</span>{{end}}{{.Target}}</td><td class="ok">{{if .OK}}✓ ok{{else}}✗ failed{{end}}</td><td>{{.Detail}}</td><td class="measure">{{.Measure}}</td></tr>
{{end}}</tbody>
</table>
</details>
{{end}}</section>
{{end}}</main>
</body>
</html>
`))
