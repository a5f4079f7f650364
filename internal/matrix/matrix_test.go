package matrix

import (
	"path/filepath"
	"testing"
)

func TestMissingResultIsUnknownNeverPass(t *testing.T) {
	a := Cell{CNI: "flannel", CNIVersion: "v1", Kubernetes: "v1.37.2", Arch: "amd64", Provider: "kind"}
	b := a
	b.Arch = "arm64"
	m := New("s", []Cell{a, b})
	m.Record(Result{Cell: a, Outcome: Pass})
	if r, _ := m.Get(b.ID()); r.Outcome != Unknown {
		t.Fatalf("cell without result: %s, want unknown", r.Outcome)
	}
	m.Record(Result{Cell: b, Outcome: "green"})
	if r, _ := m.Get(b.ID()); r.Outcome != Unknown {
		t.Fatalf("invalid outcome recorded as %s, want unknown", r.Outcome)
	}
	p := filepath.Join(t.TempDir(), "m.json")
	if err := m.WriteJSON(p); err != nil {
		t.Fatal(err)
	}
	back, err := ReadJSON(p)
	if err != nil {
		t.Fatal(err)
	}
	if c := back.Counts(); c[Pass] != 1 || c[Unknown] != 1 {
		t.Fatalf("counts after round trip: %v", c)
	}
}
