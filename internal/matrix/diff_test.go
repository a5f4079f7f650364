package matrix

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func cell(cni, ver, arch string) Cell {
	return Cell{CNI: cni, CNIVersion: ver, Kubernetes: "v1.37.2", Arch: arch, Provider: "kind"}
}

func res(c Cell, o Outcome, cause string) Result {
	return Result{Cell: c, ID: c.ID(), Outcome: o, RootCause: cause, Reason: "reason of " + string(o)}
}

func mat(rs ...Result) *Matrix {
	m := &Matrix{Schema: SchemaVersion, Scenario: "s", Generated: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	for _, r := range rs {
		m.Record(r)
	}
	return m
}

func mustExp(t *testing.T, yml string) *Expectations {
	t.Helper()
	x, err := ParseExpectations("exp.yaml", []byte(yml))
	if err != nil {
		t.Fatalf("parse expectations: %v", err)
	}
	return x
}

func ids(cs []Change) string {
	var s []string
	for _, c := range cs {
		s = append(s, c.ID)
	}
	return strings.Join(s, ",")
}

func TestDiffPutsEveryCellInOneClass(t *testing.T) {
	var (
		stay     = cell("flannel", "v1", "amd64")
		broke    = cell("flannel", "v2", "amd64")
		fixed    = cell("flannel", "v3", "amd64")
		gone     = cell("flannel", "v4", "amd64")
		known    = cell("calico", "v3.20.5", "arm64")
		newFail  = cell("flannel", "v5", "amd64")
		infra    = cell("flannel", "v6", "amd64")
		lost     = cell("flannel", "v7", "amd64")
		skipped  = cell("flannel", "v8", "amd64")
		sameFail = cell("flannel", "v9", "amd64")
	)
	base := mat(res(stay, Pass, ""), res(broke, Pass, ""), res(fixed, Fail, "dns"), res(gone, Pass, ""),
		res(known, Pass, ""), res(infra, Fail, "dns"), res(lost, Pass, ""), res(skipped, Pass, ""), res(sameFail, Fail, "dns"))
	cur := mat(res(stay, Pass, ""), res(broke, Fail, "cni-not-ready"), res(fixed, Pass, ""), res(known, Fail, "arch-mismatch"),
		res(newFail, Fail, "x"), res(infra, InfraError, ""), res(lost, Unknown, ""), res(skipped, Skipped, ""), res(sameFail, Fail, "dns"))
	exp := mustExp(t, `
expectations:
  - cni: calico
    cniVersion: v3.20.*
    arch: arm64
    rootCause: arch-mismatch
    reason: upgrade-ipam has no arm64 image
    link: https://github.com/projectcalico/calico/issues/5963
`)
	d := Diff(base, cur, exp)
	for _, c := range []struct{ name, got, want string }{
		{"regressed", ids(d.Regressed), strings.Join([]string{broke.ID(), lost.ID(), skipped.ID()}, ",")},
		{"expected", ids(d.Expected), known.ID()},
		{"fixed", ids(d.Fixed), fixed.ID()},
		{"changed", ids(d.Changed), infra.ID()},
		{"new", ids(d.New), newFail.ID()},
		{"removed", ids(d.Removed), gone.ID()},
	} {
		if c.got != c.want {
			t.Errorf("%s: %q, want %q", c.name, c.got, c.want)
		}
	}
	if d.Unchanged != 2 || d.Regressions() != 3 {
		t.Errorf("unchanged %d, regressions %d; want 2, 3", d.Unchanged, d.Regressions())
	}
	var txt, md bytes.Buffer
	if err := d.Text(&txt); err != nil {
		t.Fatal(err)
	}
	if err := d.Markdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"3 regressions, 1 fixed, 1 expected-fail, 1 changed, 1 new, 1 removed, 2 unchanged",
		broke.ID() + ": pass -> fail (cni-not-ready): reason of fail",
		known.ID() + ": fail (arch-mismatch): upgrade-ipam has no arm64 image https://github.com/projectcalico/calico/issues/5963 (exp.yaml:3)",
	} {
		if !strings.Contains(txt.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, txt.String())
		}
	}
	for _, want := range []string{"## cnimatrix diff: ❌ 3 regressions", "[projectcalico/calico#5963](https://github.com/projectcalico/calico/issues/5963)", "### Regressions"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown report lacks %q:\n%s", want, md.String())
		}
	}
	t.Logf("text report:\n%s", txt.String())
}

func TestExpectationWithOtherRootCauseDoesNotExcuse(t *testing.T) {
	c := cell("calico", "v3.20.5", "arm64")
	exp := mustExp(t, `
expectations:
  - cell: calico-v3.20.5_*_arm64_*
    rootCause: arch-mismatch
    reason: upgrade-ipam has no arm64 image
    link: https://github.com/projectcalico/calico/issues/5963
`)
	d := Diff(mat(res(c, Pass, "")), mat(res(c, Fail, "dns")), exp)
	if d.Regressions() != 1 || len(d.Expected) != 0 {
		t.Fatalf("regressions %d, expected %d; want 1, 0", d.Regressions(), len(d.Expected))
	}
	if want := "expectation exp.yaml:3 expects fail (rootCause arch-mismatch), not fail (dns)"; d.Regressed[0].Note != want {
		t.Fatalf("note %q, want %q", d.Regressed[0].Note, want)
	}
}

func TestStaleAndUnusedExpectations(t *testing.T) {
	a := cell("calico", "v3.20.5", "arm64")
	b := cell("calico", "v3.20.6", "arm64")
	c := cell("calico", "v3.21.0", "arm64")
	exp := mustExp(t, `
expectations:
  - cell: `+a.ID()+`
    reason: fixed upstream since
    link: https://github.com/projectcalico/calico/issues/5963
  - cniVersion: v3.2*
    reason: arm64 images missing
  - cni: cilium
    reason: nothing selects this
`)
	d := Diff(mat(res(a, Fail, ""), res(b, Fail, ""), res(c, Fail, "")), mat(res(a, Pass, ""), res(b, Pass, ""), res(c, Fail, "")), exp)
	if d.Regressions() != 0 || len(d.Fixed) != 2 || len(d.Expected) != 1 {
		t.Fatalf("regressions %d fixed %d expected %d; want 0, 2, 1", d.Regressions(), len(d.Fixed), len(d.Expected))
	}
	if len(d.Stale) != 2 || !d.Stale[0].Removable() || d.Stale[1].Removable() || d.Stale[1].StillExpected != 1 {
		t.Fatalf("stale: %+v", d.Stale)
	}
	if len(d.Unused) != 1 || d.Unused[0].CNI != "cilium" {
		t.Fatalf("unused: %+v", d.Unused)
	}
	var txt bytes.Buffer
	if err := d.Text(&txt); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"exp.yaml:3 (cell=" + a.ID() + "): every cell it selects now passes (" + a.ID() + "): the expectation can be removed",
		"exp.yaml:6 (cniVersion=v3.2*): 1 selected cell now passes (" + b.ID() + ") while 1 still fails as expected: narrow the expectation",
		"exp.yaml:8 (cni=cilium): selects no cell of the current matrix",
	} {
		if !strings.Contains(txt.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, txt.String())
		}
	}
}
