package runner

import (
	"cmp"
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"

	"golang.org/x/sync/semaphore"

	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

// Parallelism is how many cells run at once: N cells (each weighing 1),
// or Auto, by each cell's weight against the host's cores.
type Parallelism struct {
	// N cells at once when Auto is false (at least 1).
	N int
	// Auto admits cells by weight while their sum stays within Capacity
	// (the host's cores), weights in cores a cell keeps busy: a 2-node
	// kind cell 2 (apiserver, etcd and two kubelets), a cell with a QEMU
	// VM 4 (the VM's two TCG vCPU threads beside its kind control plane),
	// a skipped cell 0. A cell heavier than the capacity runs alone.
	// Measured on 2 cores (make bench-parallel), two cells at once were
	// slower than one: 524 s against 387 s for four cells, two kind cells
	// together 105-108 s each against 57-61 s alone; so on such a host
	// auto runs one cell at a time.
	Auto     bool
	Capacity int64
}

// ParseParallel reads --parallel: a whole number from 1, or "auto".
func ParseParallel(v string) (Parallelism, error) {
	if v == "auto" {
		return Parallelism{Auto: true, Capacity: int64(runtime.NumCPU())}, nil
	}
	var n int
	if _, err := fmt.Sscanf(v, "%d", &n); err != nil || n < 1 || fmt.Sprint(n) != v {
		return Parallelism{}, fmt.Errorf("--parallel %q: want a whole number from 1, or auto", v)
	}
	return Parallelism{N: n}, nil
}

// String says it as --parallel does.
func (p Parallelism) String() string {
	if p.Auto {
		return fmt.Sprintf("auto (%d cores)", p.Capacity)
	}
	return fmt.Sprint(max(1, p.N))
}

// capacity is the semaphore's size, weight a cell's share of it.
func (p Parallelism) capacity() int64 {
	if p.Auto {
		return max(1, p.Capacity)
	}
	return int64(max(1, p.N))
}

func (p Parallelism) weight(c Cell) int64 {
	if !p.Auto {
		return 1
	}
	w := int64(2)
	switch {
	case c.Scenario.SkipFor(c.Cell) != nil:
		return 0 // no cluster: nothing to wait for
	case c.Provider == "qemu":
		w = 4
	case c.Provider == scenario.ProviderExisting:
		w = 1 // the cluster's load is elsewhere; one at a time per cluster is the user's to keep
	}
	return min(w, p.capacity())
}

// runAdmitted runs each cell with run, in order (with auto, the heaviest
// first), each once the cells running leave room for its weight; it
// returns when all have ended. A weighted semaphore admits in FIFO order,
// so a heavy cell is not starved by light ones queued behind it. Every cell runs, also after ctx ended:
// an interrupted cell is still recorded (unknown) by its own run.
func runAdmitted(ctx context.Context, cells []Cell, par Parallelism, run func(Cell)) {
	if par.Auto {
		// Heaviest first (in their order otherwise): interleaved, a kind
		// cell would wait behind each VM cell and never find its pair.
		cells = slices.Clone(cells)
		slices.SortStableFunc(cells, func(a, b Cell) int { return cmp.Compare(par.weight(b), par.weight(a)) })
	}
	sem := semaphore.NewWeighted(par.capacity())
	var wg sync.WaitGroup
	for _, c := range cells {
		w := par.weight(c)
		_ = sem.Acquire(context.WithoutCancel(ctx), w) // cannot fail: no deadline, w <= capacity
		wg.Go(func() {
			defer sem.Release(w)
			run(c)
		})
	}
	wg.Wait()
}
