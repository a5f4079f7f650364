package report

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

const scriptPayload = `<script>document.title="pwned"</script>`

var (
	calico38amd  = matrix.Cell{CNI: "calico", CNIVersion: "v3.8.0", Kubernetes: "v1.37.2", Arch: "amd64", Provider: "kind"}
	calico38arm  = matrix.Cell{CNI: "calico", CNIVersion: "v3.8.0", Kubernetes: "v1.37.2", Arch: "arm64", Provider: "qemu"}
	calico32arm  = matrix.Cell{CNI: "calico", CNIVersion: "v3.2.0", Kubernetes: "v1.37.2", Arch: "arm64", Provider: "qemu"}
	flannelInfra = matrix.Cell{CNI: "flannel", CNIVersion: "v0.28.10", Kubernetes: "v1.36.3", Arch: "amd64", Provider: "kind"}
	flannelArm   = matrix.Cell{CNI: "flannel", CNIVersion: "v0.28.10", Kubernetes: "v1.37.2", Arch: "arm64", Provider: "qemu"}
	flannelSkip  = matrix.Cell{CNI: "flannel", CNIVersion: "v0.28.10", Kubernetes: "v1.37.2", Arch: "amd64", Provider: "kind", Variant: "ipv6"}
)

// realisticMatrix resembles what a run over calico and flannel on amd64
// (kind) and arm64 (QEMU) writes: passes, an exec-format failure with its
// evidence, an infrastructure error, a skipped and a missing cell.
func realisticMatrix(artifacts string) *matrix.Matrix {
	t0 := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	phase := func(name string, o matrix.Outcome, ms float64, ev ...matrix.Evidence) matrix.Phase {
		return matrix.Phase{Name: name, Outcome: o, Start: t0, DurationMS: ms, Evidence: ev}
	}
	nodeReady := func(node, arch string) matrix.Evidence {
		return matrix.Evidence{Check: "NodesReady", Source: "api", Target: "node " + node, OK: true,
			Detail: "Ready=True, linux/" + arch + " kubelet v1.37.2, containerd://2.4.2", LatencyMS: 4.1, Attempts: 1}
	}
	passPhases := func(arch string, clusterMS float64) []matrix.Phase {
		return []matrix.Phase{
			phase("images", matrix.Pass, 2),
			phase("cluster", matrix.Pass, clusterMS),
			phase("cni-install", matrix.Pass, 45, matrix.Evidence{Check: "cni-install", Target: "fixtures/cni/calico/calico.yaml", OK: true, Detail: "24 objects applied"}),
			phase("cni-ready", matrix.Pass, 31_500),
			phase("check:NodesReady", matrix.Pass, 4, nodeReady("cp", arch), nodeReady("worker", arch)),
			phase("check:PodToPodAcrossNodes", matrix.Pass, 75, matrix.Evidence{Check: "PodToPodAcrossNodes",
				Source: "pod probe@worker (10.244.1.2)", Target: "pod nginx-7ffcb6d497-tnrp5@cp http://10.244.0.4:80/", OK: true,
				Detail: "HTTP 200, served by nginx-7ffcb6d497-tnrp5", LatencyMS: 0.6, Attempts: 1}),
			phase("check:PodToServiceDNS", matrix.Pass, 129, matrix.Evidence{Check: "PodToServiceDNS",
				Source: "pod probe@worker (10.244.1.2)", Target: "dns nginx.cnimatrix-checks.svc.cluster.local A", OK: true,
				Detail: "NOERROR 10.96.243.163", Attempts: 2}),
			phase("teardown", matrix.Pass, 1_600),
		}
	}
	m := matrix.New("calico-arm64", []matrix.Cell{calico38amd, calico38arm, calico32arm, flannelInfra, flannelArm, flannelSkip})
	m.Generated = t0
	m.Host = matrix.Host{Arch: "amd64", Kernel: "6.18.44", Cgroup: "v1"}
	m.Record(matrix.Result{Cell: calico38amd, Outcome: matrix.Pass, Fidelity: matrix.FidelityNative, Start: t0, DurationMS: 56_000, Phases: passPhases("amd64", 22_160)})
	m.Record(matrix.Result{Cell: calico38arm, Outcome: matrix.Pass, Fidelity: matrix.FidelityVMEmulated, Start: t0, DurationMS: 412_000, Phases: passPhases("arm64", 301_000)})
	m.Record(matrix.Result{Cell: calico32arm, Outcome: matrix.Fail, Fidelity: matrix.FidelityVMEmulated, RootCause: "exec-format",
		Reason:      "cni-ready: daemonset kube-system/calico-node: 0/2 ready; calico-node holds x86_64 binaries " + scriptPayload,
		ClusterName: "cnimatrix-3ea12d56", Artifacts: filepath.Join(artifacts, calico32arm.ID()), Start: t0, DurationMS: 690_000,
		Phases: []matrix.Phase{
			phase("images", matrix.Pass, 3),
			phase("cluster", matrix.Pass, 298_000),
			phase("cni-install", matrix.Pass, 51, matrix.Evidence{Check: "cni-install", Target: "fixtures/cni/calico/v3.2.yaml", OK: true, Detail: "19 objects applied"}),
			{Name: "cni-ready", Outcome: matrix.Fail, Start: t0, DurationMS: 300_000,
				Error: "daemonset kube-system/calico-node: 0/2 ready",
				Evidence: []matrix.Evidence{
					{Check: "cni-ready", Target: "daemonset kube-system/calico-node", Detail: "0/2 ready"},
					{Check: "cni-ready", Source: "worker", Target: "calico-node-x7k2p", Attempts: 12,
						Detail: "container calico-node CrashLoopBackOff: exec /usr/bin/calico-node: exec format error " + scriptPayload},
					{Check: "binary-arch", Source: "worker", Target: "quay.io/calico/node:v3.2.0 /usr/bin/calico-node", Detail: "ELF 64-bit LSB executable, x86-64 on an arm64 node"},
				}},
			phase("artifacts", matrix.Pass, 1_367, matrix.Evidence{Check: "artifacts", Target: filepath.Join(artifacts, calico32arm.ID()), OK: true}),
			phase("teardown", matrix.Pass, 925),
		}})
	m.Record(matrix.Result{Cell: flannelInfra, Outcome: matrix.InfraError, Fidelity: matrix.FidelityNative, RootCause: "cluster-create",
		Reason: "cluster: create kind cluster: docker: Error response from daemon: failed to create endpoint", Start: t0, DurationMS: 9_000,
		Phases: []matrix.Phase{
			phase("images", matrix.Pass, 2),
			{Name: "cluster", Outcome: matrix.InfraError, Infra: true, Start: t0, DurationMS: 8_900,
				Error: "create kind cluster: docker: Error response from daemon: failed to create endpoint"},
		}})
	m.Record(matrix.Result{Cell: flannelSkip, Outcome: matrix.Skipped, Reason: "not selected (label filter or focus)"})
	// flannelArm stays unknown: no result recorded.
	m.Sort()
	return m
}

// domCell is what a page says about one matrix cell, read back from its DOM.
type domCell struct {
	Outcome, Fidelity, RootCause, Text, Href, Arch, Range, Change string
	Row, Col                                                      int
}

func parsePage(t *testing.T, page []byte) *html.Node {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		t.Fatalf("parse html: %v", err)
	}
	return doc
}

func attr(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

func walk(n *html.Node, fn func(*html.Node)) {
	fn(n)
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, fn)
	}
}

func find(n *html.Node, pred func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	walk(n, func(x *html.Node) {
		if x.Type == html.ElementNode && pred(x) {
			out = append(out, x)
		}
	})
	return out
}

func hasClass(n *html.Node, class string) bool {
	c, _ := attr(n, "class")
	for _, f := range strings.Fields(c) {
		if f == class {
			return true
		}
	}
	return false
}

func text(n *html.Node) string {
	var parts []string
	walk(n, func(x *html.Node) {
		if x.Type == html.TextNode {
			if s := strings.TrimSpace(x.Data); s != "" {
				parts = append(parts, s)
			}
		}
	})
	return strings.Join(parts, " ")
}

// matrixCells reads the data-cell elements of the matrix table with their
// position: Row counts body rows, Col counts the cells after the row header.
func matrixCells(t *testing.T, doc *html.Node) map[string]domCell {
	t.Helper()
	tables := find(doc, func(n *html.Node) bool { return n.Data == "table" && hasClass(n, "matrix") })
	if len(tables) == 0 {
		t.Fatalf("no table.matrix")
	}
	cells := map[string]domCell{}
	for _, table := range tables {
		arch, _ := attr(table, "data-arch")
		rows := find(table, func(n *html.Node) bool {
			return n.Data == "tr" && n.Parent != nil && n.Parent.Data == "tbody"
		})
		for ri, tr := range rows {
			ci := 0
			for td := tr.FirstChild; td != nil; td = td.NextSibling {
				if td.Type != html.ElementNode || td.Data != "td" {
					continue
				}
				if id, ok := attr(td, "data-cell"); ok {
					if _, dup := cells[id]; dup {
						t.Errorf("cell %s appears twice in the tables", id)
					}
					c := domCell{Text: text(td), Row: ri, Col: ci, Arch: arch}
					c.Outcome, _ = attr(td, "data-outcome")
					c.Fidelity, _ = attr(td, "data-fidelity")
					c.RootCause, _ = attr(td, "data-root-cause")
					c.Range, _ = attr(td, "data-range")
					c.Change, _ = attr(td, "data-change")
					if links := find(td, func(n *html.Node) bool { return n.Data == "a" }); len(links) == 1 {
						c.Href, _ = attr(links[0], "href")
					}
					cells[id] = c
				}
				ci++
			}
		}
	}
	return cells
}

type wantCell struct {
	cell                         matrix.Cell
	outcome, fidelity, rootCause string
}

var realisticWant = []wantCell{
	{calico38amd, "pass", "native", ""},
	{calico38arm, "pass", "vm-emulated", ""},
	{calico32arm, "fail", "vm-emulated", "exec-format"},
	{flannelInfra, "infra-error", "native", "cluster-create"},
	{flannelArm, "unknown", "", ""},
	{flannelSkip, "skipped", "", ""},
}

// checkRealisticPage asserts what a reader of the page sees about each cell
// of realisticMatrix, whether the page was parsed from Go's output or from
// the DOM a browser built.
func checkRealisticPage(t *testing.T, doc *html.Node, extraCells int) {
	t.Helper()
	cells := matrixCells(t, doc)
	if len(cells) != len(realisticWant)+extraCells {
		t.Errorf("table has %d cells, want %d: %v", len(cells), len(realisticWant)+extraCells, cells)
	}
	sections := map[string]*html.Node{}
	for _, s := range find(doc, func(n *html.Node) bool { return n.Data == "section" }) {
		id, _ := attr(s, "id")
		sections[id] = s
	}
	for _, w := range realisticWant {
		id := w.cell.ID()
		c, ok := cells[id]
		if !ok {
			t.Errorf("no data-cell %q in the table", id)
			continue
		}
		if c.Outcome != w.outcome || c.Fidelity != w.fidelity || c.RootCause != w.rootCause {
			t.Errorf("%s: outcome %q fidelity %q root cause %q, want %q %q %q", id, c.Outcome, c.Fidelity, c.RootCause, w.outcome, w.fidelity, w.rootCause)
		}
		wantText := strings.TrimSpace(strings.Join([]string{w.outcome, w.fidelity, w.rootCause}, " "))
		if !strings.HasPrefix(strings.Join(strings.Fields(c.Text), " "), strings.Join(strings.Fields(wantText), " ")) {
			t.Errorf("%s: cell text %q, want it to start with %q", id, c.Text, wantText)
		}
		sec := sections[strings.TrimPrefix(c.Href, "#")]
		if !strings.HasPrefix(c.Href, "#") || sec == nil {
			t.Errorf("%s: link %q leads to no details section", id, c.Href)
			continue
		}
		if d, _ := attr(sec, "data-detail"); d != id {
			t.Errorf("%s: link %q leads to the section of %q", id, c.Href, d)
		}
		if o := text(sec); !strings.Contains(o, w.outcome) {
			t.Errorf("%s: section does not name the outcome %q: %q", id, w.outcome, o)
		}
	}

	// The failure explains itself: the reason, the failing evidence and where the artifacts are.
	fail := sections[cells[calico32arm.ID()].Href[1:]]
	if fail == nil {
		t.Fatal("no section for the failed cell")
	}
	ft := text(fail)
	for _, want := range []string{"exec-format", "calico-node holds x86_64 binaries " + scriptPayload,
		"worker → calico-node-x7k2p", "✗ failed", "exec /usr/bin/calico-node: exec format error", "12 attempts",
		"ELF 64-bit LSB executable, x86-64", "cnimatrix-3ea12d56", "daemonset kube-system/calico-node: 0/2 ready"} {
		if !strings.Contains(ft, want) {
			t.Errorf("failed cell's section lacks %q:\n%s", want, ft)
		}
	}
	bad := find(fail, func(n *html.Node) bool { return n.Data == "tr" && hasClass(n, "bad") })
	if len(bad) != 3 {
		t.Errorf("failed cell shows %d failed observations, want 3", len(bad))
	}
	links := find(fail, func(n *html.Node) bool { return n.Data == "a" && hasClass(n, "artifacts") })
	if len(links) != 1 {
		t.Fatalf("failed cell has %d artifacts links, want 1", len(links))
	}
	if href, _ := attr(links[0], "href"); href != "artifacts/"+calico32arm.ID()+"/" {
		t.Errorf("artifacts link %q, want the folder relative to the page", href)
	}
	// Phase bars: every phase of this cell starts at t0, so all bars start
	// at the left; the longest (cni-ready, 300s) fills the track, the
	// cluster (298s) nearly.
	widths := map[string]string{}
	for _, b := range find(fail, func(n *html.Node) bool { return hasClass(n, "bar") }) {
		name, _ := attr(b, "data-phase")
		widths[name], _ = attr(b, "style")
	}
	if widths["cni-ready"] != "margin-left:0.0%;width:100.0%" || widths["cluster"] != "margin-left:0.0%;width:99.3%" || widths["images"] != "margin-left:0.0%;width:0.4%" {
		t.Errorf("phase bar widths %v", widths)
	}
	if s := find(doc, func(n *html.Node) bool { return n.Data == "script" }); len(s) != 0 {
		t.Errorf("page has %d <script> elements; a detail was not escaped", len(s))
	}
}

func TestHTMLTableLayout(t *testing.T) {
	m := realisticMatrix("/out/artifacts")
	// Versions order numerically, not as text: v1.9 before v1.10.
	old := matrix.Cell{CNI: "calico", CNIVersion: "v3.10.0", Kubernetes: "v1.9.0", Arch: "amd64", Provider: "kind"}
	m.Record(matrix.Result{Cell: old, Outcome: matrix.Pass, Fidelity: matrix.FidelityNative})
	var b bytes.Buffer
	if err := writeHTML(&b, m, "/out"); err != nil {
		t.Fatal(err)
	}
	doc := parsePage(t, b.Bytes())

	// One table per arch, arm64 first; columns are Kubernetes versions (one
	// provider per arch here, so no provider row); rows the CNI versions
	// that arch has.
	type layout struct{ arch, heads, rows string }
	var got []layout
	for _, table := range find(doc, func(n *html.Node) bool { return n.Data == "table" && hasClass(n, "matrix") }) {
		var l layout
		l.arch, _ = attr(table, "data-arch")
		var heads, rows []string
		for _, th := range find(table, func(n *html.Node) bool { return n.Data == "th" && n.Parent.Parent.Data == "thead" }) {
			span, _ := attr(th, "colspan")
			heads = append(heads, text(th)+"/"+span)
		}
		for _, th := range find(table, func(n *html.Node) bool { return n.Data == "th" && n.Parent.Parent.Data == "tbody" }) {
			rows = append(rows, text(th))
		}
		l.heads, l.rows = strings.Join(heads, "|"), strings.Join(rows, "|")
		got = append(got, l)
	}
	want := []layout{
		{"arm64", "CNI/|Kubernetes v1.37.2/1", "calico v3.2.0|calico v3.8.0|flannel v0.28.10"},
		{"amd64", "CNI/|Kubernetes v1.9.0/1|Kubernetes v1.36.3/1|Kubernetes v1.37.2/1", "calico v3.8.0|calico v3.10.0|flannel v0.28.10|flannel v0.28.10 ipv6"},
	}
	if len(got) != len(want) {
		t.Fatalf("tables %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("table %d:\n%+v, want\n%+v", i, got[i], want[i])
		}
	}
	// Every cell sits at its arch, row and column; combinations the matrix lacks are empty.
	cells := matrixCells(t, doc)
	pos := map[string]struct {
		arch     string
		row, col int
	}{
		calico32arm.ID(): {"arm64", 0, 0}, calico38arm.ID(): {"arm64", 1, 0}, flannelArm.ID(): {"arm64", 2, 0},
		calico38amd.ID(): {"amd64", 0, 2}, old.ID(): {"amd64", 1, 0}, flannelInfra.ID(): {"amd64", 2, 1}, flannelSkip.ID(): {"amd64", 3, 2},
	}
	for id, p := range pos {
		if c := cells[id]; c.Arch != p.arch || c.Row != p.row || c.Col != p.col {
			t.Errorf("%s in %s at row %d col %d, want %s %d %d", id, c.Arch, c.Row, c.Col, p.arch, p.row, p.col)
		}
	}
	if n := len(find(doc, func(n *html.Node) bool { return n.Data == "td" && hasClass(n, "none") })); n != 3*1+4*3-len(pos) {
		t.Errorf("%d empty table cells, want %d", n, 3*1+4*3-len(pos))
	}
	// Per-arch counts: arm64 has 1 pass (v3.8), 1 fail (v3.2), 1 unknown (flannel).
	counts := map[string]string{}
	for _, sec := range find(doc, func(n *html.Node) bool { return n.Data == "section" && hasClass(n, "arch") }) {
		arch, _ := attr(sec, "data-arch")
		var parts []string
		for _, li := range find(sec, func(n *html.Node) bool { _, ok := attr(n, "data-arch-count"); return ok }) {
			parts = append(parts, text(li))
		}
		counts[arch] = strings.Join(parts, ", ")
	}
	if counts["arm64"] != "1 pass, 1 fail, 0 infra-error, 0 skipped, 1 unknown" {
		t.Errorf("arm64 counts %q", counts["arm64"])
	}
	// Details follow the tables' reading order.
	var order []string
	for _, s := range find(doc, func(n *html.Node) bool { return n.Data == "section" && hasClass(n, "detail") }) {
		id, _ := attr(s, "data-detail")
		order = append(order, id)
	}
	wantOrder := []string{calico32arm.ID(), calico38arm.ID(), flannelArm.ID(), calico38amd.ID(), old.ID(), flannelInfra.ID(), flannelSkip.ID()}
	if strings.Join(order, " ") != strings.Join(wantOrder, " ") {
		t.Errorf("details order\n%q, want\n%q", order, wantOrder)
	}
	checkRealisticPage(t, doc, 1)
}

func TestHTMLEscapesEveryField(t *testing.T) {
	evil := matrix.Cell{CNI: "calico", CNIVersion: "v3.2.0", Kubernetes: "v1.37.2", Arch: "arm64", Provider: "qemu", Variant: `"><b>x`}
	m := matrix.New(`<i>scenario</i>`, nil)
	m.Record(matrix.Result{Cell: evil, Outcome: matrix.Fail, Fidelity: `"onmouseover="alert(1)`, RootCause: scriptPayload,
		Reason: scriptPayload, ClusterName: scriptPayload, Artifacts: `javascript:alert(1)`,
		Phases: []matrix.Phase{{Name: scriptPayload, Outcome: matrix.Fail, DurationMS: 5, Error: scriptPayload,
			Evidence: []matrix.Evidence{{Check: scriptPayload, Source: scriptPayload, Target: scriptPayload, Detail: scriptPayload}}}}})
	var b bytes.Buffer
	if err := HTML(&b, m); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if strings.Contains(page, "<script") || strings.Contains(page, "<b>x") || strings.Contains(page, "<i>scenario") {
		t.Fatalf("markup from the matrix reached the page unescaped:\n%s", page)
	}
	if n := strings.Count(page, "&lt;script&gt;document.title=&#34;pwned&#34;&lt;/script&gt;"); n < 8 {
		t.Errorf("escaped payload shown %d times, want every field (>= 8)", n)
	}
	doc := parsePage(t, b.Bytes())
	for _, n := range find(doc, func(*html.Node) bool { return true }) {
		for _, a := range n.Attr {
			if strings.HasPrefix(a.Key, "on") {
				t.Errorf("<%s> got an event handler attribute %s=%q", n.Data, a.Key, a.Val)
			}
			if a.Key == "href" && strings.HasPrefix(strings.ToLower(a.Val), "javascript:") {
				t.Errorf("<%s> links to %q", n.Data, a.Val)
			}
		}
	}
	c := matrixCells(t, doc)[evil.ID()]
	if c.RootCause != scriptPayload || !strings.Contains(c.Text, scriptPayload) {
		t.Errorf("root cause not shown as text: attr %q text %q", c.RootCause, c.Text)
	}
}

func TestHTMLRejectsTwoResultsForOneCell(t *testing.T) {
	m := realisticMatrix("/a")
	m.Results = append(m.Results, m.Results[0])
	err := HTML(&bytes.Buffer{}, m)
	if err == nil || !strings.Contains(err.Error(), m.Results[0].ID+" has two results") {
		t.Fatalf("err %v, want it to name the duplicated cell", err)
	}
}

func TestWriteAllWritesHTML(t *testing.T) {
	dir := t.TempDir()
	f, err := WriteAll(dir, realisticMatrix(filepath.Join(dir, "artifacts")))
	if err != nil {
		t.Fatal(err)
	}
	if f.HTML != filepath.Join(dir, "matrix.html") {
		t.Errorf("Files.HTML %q", f.HTML)
	}
	page, err := os.ReadFile(f.HTML)
	if err != nil {
		t.Fatal(err)
	}
	checkRealisticPage(t, parsePage(t, page), 0)
}

// TestHTMLInBrowser renders the page in headless Chromium and checks what a
// reader gets: the DOM the browser built (cells, outcomes, no script run) and
// a screenshot with the outcome colours in it.
func TestHTMLInBrowser(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if testing.Short() {
			t.Skip("chromium not installed (apt-get install chromium)")
		}
		t.Fatal("chromium not installed: this test renders the page in a real browser; run hack/setup-host.sh or apt-get install -y chromium (use -short to skip)")
	}
	dir := t.TempDir()
	if a := os.Getenv("ARTIFACTS"); a != "" {
		dir = filepath.Join(a, "report-html")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	artifacts := filepath.Join(dir, "artifacts")
	if err := os.MkdirAll(filepath.Join(artifacts, calico32arm.ID()), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := WriteAll(dir, realisticMatrix(artifacts))
	if err != nil {
		t.Fatal(err)
	}
	pageURL := "file://" + f.HTML
	profile := t.TempDir()
	run := func(extra ...string) []byte {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
			"--user-data-dir=" + profile, "--no-first-run", "--window-size=1400,1000"}, extra...)
		cmd := exec.CommandContext(ctx, chromium, append(args, pageURL)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			t.Fatalf("chromium %s: %v\n%s", strings.Join(extra, " "), err, lastLines(stderr.String(), 20))
		}
		t.Logf("chromium %s: %s", strings.Join(extra, " "), time.Since(start).Round(time.Millisecond))
		return stdout.Bytes()
	}

	dom := run("--dump-dom")
	doc := parsePage(t, dom)
	checkRealisticPage(t, doc, 0)
	if titles := find(doc, func(n *html.Node) bool { return n.Data == "title" }); len(titles) != 1 || text(titles[0]) != "cnimatrix: calico-arm64" {
		t.Errorf("document title changed; did a script from the matrix run? %v", titles)
	}
	// The artifacts link resolves: the browser would open the folder the run wrote.
	if _, err := os.Stat(filepath.Join(dir, "artifacts", calico32arm.ID())); err != nil {
		t.Errorf("artifacts link target: %v", err)
	}

	shot := filepath.Join(dir, "matrix-html.png")
	run("--screenshot=" + shot)
	t.Logf("screenshot: %s", shot)
	fh, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	img, err := png.Decode(fh)
	if err != nil {
		t.Fatalf("screenshot %s is not a PNG: %v", shot, err)
	}
	if b := img.Bounds(); b.Dx() != 1400 || b.Dy() != 1000 {
		t.Errorf("screenshot is %dx%d, want 1400x1000", b.Dx(), b.Dy())
	}
	colours, _ := colourStats(img, img.Bounds().Max.Y)
	if colours < 50 {
		t.Errorf("screenshot has %d distinct colours: blank or unstyled", colours)
	}
	// For this matrix the heading and the two arch tables fill the first 900
	// pixel rows and the details (whose phase bars use the same colours) start below:
	// there each outcome's fill must cover at least a table cell, more than
	// the count chips above the table (about 1300 pixels each) could. The
	// unknown cell is striped, half of it in its colour.
	_, near := colourStats(img, 900)
	for _, o := range []matrix.Outcome{matrix.Pass, matrix.Fail, matrix.InfraError, matrix.Skipped, matrix.Unknown} {
		if n := near[o]; n < 3000 {
			t.Errorf("table area has %d pixels of the %s colour %s, want a filled cell (>= 3000)", n, o, outcomeColour[o])
		}
	}
	t.Logf("screenshot: %d colours; table area pixels per outcome colour: %v", colours, near)
}

// colourStats counts, in the first rows of img, the distinct colours and how
// many pixels are within a small distance of each outcome colour (the
// browser may round).
func colourStats(img image.Image, rows int) (int, map[matrix.Outcome]int) {
	type rgb struct{ r, g, b int }
	targets := map[matrix.Outcome]rgb{}
	for o, hex := range outcomeColour {
		var c rgb
		for i, p := range []*int{&c.r, &c.g, &c.b} {
			v := 0
			for _, ch := range hex[1+2*i : 3+2*i] {
				v = v*16 + strings.IndexRune("0123456789abcdef", ch)
			}
			*p = v
		}
		targets[o] = c
	}
	seen := map[rgb]bool{}
	near := map[matrix.Outcome]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < min(b.Max.Y, b.Min.Y+rows); y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			c := rgb{int(r >> 8), int(g >> 8), int(bl >> 8)}
			seen[c] = true
			for o, t := range targets {
				if abs(c.r-t.r) <= 6 && abs(c.g-t.g) <= 6 && abs(c.b-t.b) <= 6 {
					near[o]++
				}
			}
		}
	}
	return len(seen), near
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func TestArtifactsURL(t *testing.T) {
	for _, c := range []struct{ path, pageDir, want string }{
		{"/out/artifacts/cell", "/out", "artifacts/cell/"},
		{"/out/artifacts/cell/", "/out", "artifacts/cell/"},
		{"/ci/artifacts/cell", "/out", "file:///ci/artifacts/cell/"},
		{"_out/artifacts/a b#1", "", "_out/artifacts/a%20b%231/"},
		{"/abs/cell", "", "file:///abs/cell/"},
		{"x:y", "", "./x:y/"},
	} {
		if got := string(artifactsURL(c.path, c.pageDir)); got != c.want {
			t.Errorf("artifactsURL(%q, %q) = %q, want %q", c.path, c.pageDir, got, c.want)
		}
	}
}

// The phase bars are a timeline: each at its start offset within the
// cell's span, so a gap (an idle wait) and an overlap show.
func TestHTMLPhaseTimeline(t *testing.T) {
	t0 := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	at := func(name string, startS, durS float64) matrix.Phase {
		return matrix.Phase{Name: name, Outcome: matrix.Pass, Start: t0.Add(time.Duration(startS * float64(time.Second))), DurationMS: durS * 1000}
	}
	cell := matrix.Cell{CNI: "flannel", CNIVersion: "v0.28.10", Kubernetes: "v1.37.2", Arch: "arm64", Provider: "qemu"}
	m := matrix.New("timeline", []matrix.Cell{cell})
	m.Record(matrix.Result{Cell: cell, Outcome: matrix.Pass, Phases: []matrix.Phase{
		at("cluster", 0, 50),
		at("vm-boot", 10, 25),   // beside the control plane
		at("cni-ready", 60, 30), // after a 10 s gap
		at("checks", 90, 10),
	}})
	var b bytes.Buffer
	if err := HTML(&b, m); err != nil {
		t.Fatal(err)
	}
	doc := parsePage(t, b.Bytes())
	style := map[string]string{}
	for _, n := range find(doc, func(n *html.Node) bool { return hasClass(n, "bar") }) {
		name, _ := attr(n, "data-phase")
		style[name], _ = attr(n, "style")
	}
	want := map[string]string{
		"cluster":   "margin-left:0.0%;width:50.0%",
		"vm-boot":   "margin-left:10.0%;width:25.0%",
		"cni-ready": "margin-left:60.0%;width:30.0%",
		"checks":    "margin-left:90.0%;width:10.0%",
	}
	for k, v := range want {
		if style[k] != v {
			t.Errorf("phase %s bar %q, want %q", k, style[k], v)
		}
	}
	if !strings.Contains(b.String(), "1m40s in all") {
		t.Errorf("the timeline does not say its span (100 s)")
	}
}
