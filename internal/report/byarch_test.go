package report

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

// synthetic72 is a Calico matrix of 9 versions x 4 Kubernetes versions x 2
// arches, with an outcome that depends on the cell so that each arch has
// its own counts. Arch order in the input is amd64 first, on purpose.
func synthetic72() *matrix.Matrix {
	versions := []string{"v3.24.6", "v3.25.2", "v3.26.5", "v3.27.5", "v3.28.5", "v3.29.7", "v3.30.7", "v3.31.7", "v3.32.1"}
	k8s := []string{"v1.30.14", "v1.34.3", "v1.36.3", "v1.37.2"}
	var cells []matrix.Cell
	for _, arch := range []string{"amd64", "arm64"} {
		provider := map[string]string{"amd64": "kind", "arm64": "qemu"}[arch]
		for _, v := range versions {
			for _, k := range k8s {
				cells = append(cells, matrix.Cell{CNI: "calico", CNIVersion: v, Kubernetes: k, Arch: arch, Provider: provider})
			}
		}
	}
	m := matrix.New("calico-72", cells)
	for i, c := range cells {
		o := matrix.Pass
		switch {
		case c.Arch == "arm64" && i%4 == 0:
			o = matrix.Fail
		case c.Arch == "arm64" && i%9 == 0:
			o = matrix.Unknown
		case c.Arch == "amd64" && i%7 == 0:
			o = matrix.InfraError
		}
		if o == matrix.Unknown {
			continue // never recorded
		}
		r := matrix.Result{Cell: c, Outcome: o}
		if o != matrix.Pass {
			r.RootCause = "connectivity"
		}
		m.Record(r)
	}
	m.Sort()
	return m
}

func countOutcomes(m *matrix.Matrix, arch string) map[matrix.Outcome]int {
	n := map[matrix.Outcome]int{}
	for _, r := range m.Results {
		if r.Arch == arch {
			n[r.Outcome]++
		}
	}
	return n
}

func TestMatrix72GroupsByArch(t *testing.T) {
	m := synthetic72()
	if len(m.Results) != 72 {
		t.Fatalf("%d cells, want 72", len(m.Results))
	}
	var b bytes.Buffer
	if err := HTML(&b, m); err != nil {
		t.Fatal(err)
	}
	doc := parsePage(t, b.Bytes())
	tables := find(doc, func(n *html.Node) bool { return n.Data == "table" && hasClass(n, "matrix") })
	var arches []string
	for _, tb := range tables {
		a, _ := attr(tb, "data-arch")
		arches = append(arches, a)
		rows := find(tb, func(n *html.Node) bool { return n.Data == "tr" && n.Parent.Data == "tbody" })
		heads := find(tb, func(n *html.Node) bool { return n.Data == "th" && n.Parent.Parent.Data == "thead" })
		if len(rows) != 9 || len(heads) != 1+4 {
			t.Errorf("%s table: %d rows, %d header cells; want 9 CNI versions and CNI + 4 Kubernetes versions", a, len(rows), len(heads))
		}
		if got := text(heads[1]); got != "Kubernetes v1.30.14" {
			t.Errorf("%s first column %q", a, got)
		}
	}
	if strings.Join(arches, ",") != "arm64,amd64" {
		t.Errorf("tables %v, want arm64 then amd64", arches)
	}

	cells := matrixCells(t, doc)
	if len(cells) != 72 {
		t.Errorf("%d cells in the tables, want 72", len(cells))
	}
	for _, r := range m.Results {
		c := cells[r.ID]
		if c.Arch != r.Arch || c.Outcome != string(r.Outcome) {
			t.Errorf("%s: in the %s table as %s, want %s %s", r.ID, c.Arch, c.Outcome, r.Arch, r.Outcome)
		}
		// v3.32.1 was tested on v1.34-v1.36: v1.37.2 is outside, v1.34.3 inside.
		want := RangeOutside
		if up := upstreamOf(r.Cell); up.Range == RangeInside {
			want = RangeInside
		}
		if c.Range != want {
			t.Errorf("%s: range %q, want %q", r.ID, c.Range, want)
		}
	}
	v3321 := matrix.Cell{CNI: "calico", CNIVersion: "v3.32.1", Arch: "arm64", Provider: "qemu"}
	for k, want := range map[string]string{"v1.34.3": RangeInside, "v1.36.3": RangeInside, "v1.37.2": RangeOutside, "v1.30.14": RangeOutside} {
		v3321.Kubernetes = k
		if got := cells[v3321.ID()].Range; got != want {
			t.Errorf("%s: range %q, want %q", v3321.ID(), got, want)
		}
	}

	// Per-arch counts in the page are the matrix's.
	for _, sec := range find(doc, func(n *html.Node) bool { return n.Data == "section" && hasClass(n, "arch") }) {
		arch, _ := attr(sec, "data-arch")
		n := countOutcomes(m, arch)
		for _, li := range find(sec, func(n *html.Node) bool { _, ok := attr(n, "data-arch-count"); return ok }) {
			o, _ := attr(li, "data-arch-count")
			if want := fmt.Sprintf("%d %s", n[matrix.Outcome(o)], o); text(li) != want {
				t.Errorf("%s count %q, want %q", arch, text(li), want)
			}
		}
	}

	// arm64 cells of a release with known arm64 issues carry them in their detail; amd64 cells do not.
	notes := map[string]int{}
	for _, sec := range find(doc, func(n *html.Node) bool { return n.Data == "section" && hasClass(n, "detail") }) {
		id, _ := attr(sec, "data-detail")
		notes[id] = len(find(sec, func(n *html.Node) bool {
			return n.Data == "li" && n.Parent.Parent != nil && hasClass(n.Parent.Parent, "arm64-notes")
		}))
	}
	arm := matrix.Cell{CNI: "calico", CNIVersion: "v3.27.5", Kubernetes: "v1.30.14", Arch: "arm64", Provider: "qemu"}
	amd := matrix.Cell{CNI: "calico", CNIVersion: "v3.27.5", Kubernetes: "v1.30.14", Arch: "amd64", Provider: "kind"}
	if notes[arm.ID()] != 3 || notes[amd.ID()] != 0 {
		t.Errorf("arm64 notes: %s has %d (want the line and 2 issues), %s has %d (want none)", arm.ID(), notes[arm.ID()], amd.ID(), notes[amd.ID()])
	}

	// Markdown: the same blocks, arm64 first, with the same counts.
	var md bytes.Buffer
	if err := Markdown(&md, m); err != nil {
		t.Fatal(err)
	}
	s := md.String()
	ia, ib := strings.Index(s, "\n## arm64\n"), strings.Index(s, "\n## amd64\n")
	if ia < 0 || ib < ia {
		t.Fatalf("markdown blocks out of order (arm64 at %d, amd64 at %d):\n%s", ia, ib, s)
	}
	for _, arch := range []string{"arm64", "amd64"} {
		n := countOutcomes(m, arch)
		want := fmt.Sprintf("36 cells: %d pass, %d fail, %d infra-error, 0 skipped, %d unknown.", n[matrix.Pass], n[matrix.Fail], n[matrix.InfraError], n[matrix.Unknown])
		if !strings.Contains(s, want) {
			t.Errorf("markdown lacks the %s counts %q", arch, want)
		}
	}
	if strings.Contains(s, " on .") {
		t.Errorf("markdown says %q for a matrix without host facts", " on .")
	}
	if !strings.Contains(s, "untested k8s (upstream v1.34-v1.36)") {
		t.Errorf("markdown lacks the range marker of v3.32.1 on v1.37")
	}
}

// A diff against a baseline is drawn on the same tables: the cell that
// regressed is outlined and says what it was, a fixed cell too.
func TestHTMLDiffMarksRegressions(t *testing.T) {
	base := synthetic72()
	cur := synthetic72()
	var regressed matrix.Result // the first pass, made a fail
	for i := range cur.Results {
		if cur.Results[i].Outcome == matrix.Pass {
			regressed = cur.Results[i]
			cur.Results[i].Outcome, cur.Results[i].RootCause = matrix.Fail, "arch-mismatch"
			break
		}
	}
	var fixed matrix.Result
	for i := range cur.Results {
		if cur.Results[i].Outcome == matrix.Fail && cur.Results[i].ID != regressed.ID {
			fixed = cur.Results[i]
			cur.Results[i].Outcome, cur.Results[i].RootCause = matrix.Pass, ""
			break
		}
	}
	d := matrix.Diff(base, cur, nil)
	var b bytes.Buffer
	if err := HTMLDiff(&b, cur, &d); err != nil {
		t.Fatal(err)
	}
	cells := matrixCells(t, parsePage(t, b.Bytes()))
	changed := 0
	for id, c := range cells {
		switch id {
		case regressed.ID:
			if c.Change != "regressed" || !strings.Contains(c.Text, "regressed (was pass)") {
				t.Errorf("regressed cell %s: change %q, text %q", id, c.Change, c.Text)
			}
		case fixed.ID:
			if c.Change != "fixed" || !strings.Contains(c.Text, "fixed (was fail connectivity)") {
				t.Errorf("fixed cell %s: change %q, text %q", id, c.Change, c.Text)
			}
		}
		if c.Change != "" {
			changed++
		}
	}
	if changed != 2 {
		t.Errorf("%d cells marked, want 2", changed)
	}
	if !bytes.Contains(b.Bytes(), []byte("1 regression")) {
		t.Errorf("page summary is not the diff's")
	}
}
