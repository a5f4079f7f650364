package matrix

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestMergeUnionAndUnknownYields(t *testing.T) {
	a, b, c := cell("flannel", "v1", "amd64"), cell("flannel", "v1", "arm64"), cell("flannel", "v2", "amd64")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// Each shard lists every cell of the scenario, unknown where another shard ran it.
	s1 := mat(res(a, Pass, ""), res(b, Unknown, ""), res(c, Pass, ""))
	s1.Host = Host{Arch: "amd64", Hostname: "runner-1"}
	s2 := mat(res(b, Fail, "arch-mismatch"), res(a, Unknown, ""))
	s2.Host = Host{Arch: "arm64", Hostname: "runner-2"}
	s2.Generated = s1.Generated.Add(time.Hour)
	later := res(c, Pass, "")
	later.Start = t0.Add(time.Minute)
	s2.Record(later)
	m, err := Merge(s1, s2)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Outcome{a.ID(): Pass, b.ID(): Fail, c.ID(): Pass}
	if len(m.Results) != len(want) {
		t.Fatalf("%d results, want %d", len(m.Results), len(want))
	}
	for id, o := range want {
		if r, _ := m.Get(id); r.Outcome != o {
			t.Errorf("%s: %s, want %s", id, r.Outcome, o)
		}
	}
	if r, _ := m.Get(c.ID()); !r.Start.Equal(later.Start) {
		t.Errorf("agreeing shards: kept start %s, want the later %s", r.Start, later.Start)
	}
	if m.Host.Arch != "amd64,arm64" || m.Host.Hostname != "runner-1,runner-2" || m.Scenario != "s" || !m.Generated.Equal(s2.Generated) {
		t.Errorf("merged header: scenario %q host %+v generated %s", m.Scenario, m.Host, m.Generated)
	}
	for i := 1; i < len(m.Results); i++ {
		if m.Results[i-1].ID > m.Results[i].ID {
			t.Fatal("merged results not sorted by ID")
		}
	}
	// Merging in the other order gives the same cells.
	m2, err := Merge(s2, s1)
	if err != nil {
		t.Fatal(err)
	}
	for id, o := range want {
		if r, _ := m2.Get(id); r.Outcome != o {
			t.Errorf("reversed: %s: %s, want %s", id, r.Outcome, o)
		}
	}
}

func TestMergeConflictNamesCellAndShards(t *testing.T) {
	a, b := cell("flannel", "v1", "amd64"), cell("flannel", "v2", "amd64")
	_, err := MergeShards(
		Shard{Name: "amd64/matrix.json", Matrix: mat(res(a, Pass, ""), res(b, Fail, "dns"))},
		Shard{Name: "retry/matrix.json", Matrix: mat(res(a, Fail, "cni-not-ready"), res(b, Fail, "service"))},
	)
	var ce *ConflictError
	if !errors.As(err, &ce) || len(ce.Conflicts) != 2 {
		t.Fatalf("error %v, want a ConflictError with 2 conflicts", err)
	}
	for _, want := range []string{
		"cell " + a.ID() + ": amd64/matrix.json says pass, retry/matrix.json says fail (cni-not-ready)",
		"cell " + b.ID() + ": amd64/matrix.json says fail (dns), retry/matrix.json says fail (service)",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%s", want, err)
		}
	}
}

func TestMergeBadInput(t *testing.T) {
	if _, err := Merge(); err == nil {
		t.Error("merge of nothing: no error")
	}
	if _, err := Merge(mat(), nil); err == nil || !strings.Contains(err.Error(), "shard 2") {
		t.Errorf("merge with nil matrix: %v", err)
	}
}
