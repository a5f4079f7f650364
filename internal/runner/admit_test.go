package runner

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

func TestParseParallel(t *testing.T) {
	for v, want := range map[string]bool{"1": true, "4": true, "auto": true, "0": false, "-1": false, "two": false, "2x": false} {
		_, err := ParseParallel(v)
		if (err == nil) != want {
			t.Errorf("ParseParallel(%q): %v", v, err)
		}
	}
}

// Auto on 4 cores: the VM cell first and alone, then the kind cells two at
// a time; on 2 cores one cell at a time.
func TestAutoAdmitsByWeight(t *testing.T) {
	s := &scenario.Scenario{}
	cell := func(id, prov string) Cell {
		return Cell{Scenario: s, Cell: matrix.Cell{CNI: "flannel", CNIVersion: id, Kubernetes: "v1.37.2", Arch: "amd64", Provider: prov}}
	}
	cells := []Cell{cell("a", "kind"), cell("b", "kind"), cell("c", "qemu"), cell("d", "kind"), cell("e", "kind")}
	par := Parallelism{Auto: true, Capacity: 4}
	var mu sync.Mutex
	load, peak := int64(0), int64(0)
	var order []string
	together := map[string][]string{} // cell -> cells running when it started
	running := map[string]bool{}
	runAdmitted(context.Background(), cells, par, func(c Cell) {
		w := par.weight(c)
		mu.Lock()
		load += w
		peak = max(peak, load)
		order = append(order, c.CNIVersion)
		for r := range running {
			together[c.CNIVersion] = append(together[c.CNIVersion], r)
		}
		running[c.CNIVersion] = true
		mu.Unlock()
		time.Sleep(30 * time.Millisecond)
		mu.Lock()
		load -= w
		delete(running, c.CNIVersion)
		mu.Unlock()
	})
	if peak != 4 {
		t.Errorf("peak weight %d, want 4 (two kind cells at once, never more)", peak)
	}
	if len(together["c"]) != 0 {
		t.Errorf("the VM cell started beside %v, want alone", together["c"])
	}
	// Kind cells ran two at a time: each started beside at most one other.
	paired := 0
	for _, id := range []string{"a", "b", "d", "e"} {
		if len(together[id]) > 1 {
			t.Errorf("kind cell %s started beside %v", id, together[id])
		}
		paired += len(together[id])
	}
	if paired == 0 {
		t.Error("no two kind cells ran at once")
	}
	if len(order) != 5 || order[0] != "c" {
		t.Errorf("start order %v, want the VM cell first (then the kind cells in pairs)", order)
	}
	if w := (Parallelism{N: 3}).weight(cells[2]); w != 1 {
		t.Errorf("--parallel N weighs every cell 1, got %d", w)
	}
	two := Parallelism{Auto: true, Capacity: 2}
	if two.weight(cells[0]) != 2 || two.weight(cells[2]) != 2 {
		t.Errorf("on 2 cores every cell fills the host: kind %d, VM %d", two.weight(cells[0]), two.weight(cells[2]))
	}
}
