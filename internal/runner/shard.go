package runner

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/engine"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

// ParseShard reads "K/N" (1 <= K <= N): shard K of N.
func ParseShard(v string) (k, n int, err error) {
	a, b, ok := strings.Cut(v, "/")
	if ok {
		k, err = strconv.Atoi(a)
		if err == nil {
			n, err = strconv.Atoi(b)
		}
	}
	if !ok || err != nil || n < 1 || k < 1 || k > n {
		return 0, 0, fmt.Errorf("shard %q: want K/N with 1 <= K <= N, e.g. 2/8", v)
	}
	return k, n, nil
}

// Per-cell costs for balancing shards, measured on this project's 2-core
// reference machine with warm caches (README "Speed"): a kind cell ~75 s, a
// mixed cell with QEMU arm64 workers ~300 s, a further cell on a reused
// cluster ~60 s of which the cluster is none. Only their ratios matter: they
// decide which cells go together, not how long anything may take.
const (
	costKindCell   = 75 * time.Second
	costVMCell     = 300 * time.Second
	costReusedCell = 60 * time.Second
	costUpgrade    = 60 * time.Second
	costSkipped    = time.Second
)

// shardGroup is cells that must run in one shard: those sharing a reused
// cluster, or one cell alone.
type shardGroup struct {
	key   string
	cells []int // indexes into Suite.Cells
	cost  time.Duration
}

// Shard keeps the cells of shard k of n (1-based) and drops the rest. The
// split is deterministic (the same scenarios, filters and n give every
// shard the same cells on every machine), cells that share a reused
// cluster (reuse: --reuse-clusters, or a scenario's reuseClusters) stay in
// one shard, and groups go largest first to the shard with the least
// estimated cost so far, so shards take about the same time. A shard may be
// empty when n exceeds the groups.
func (s *Suite) Shard(k, n int, reuse bool) {
	owner, _ := s.assignShards(n, reuse)
	var cells []Cell
	for i, c := range s.Cells {
		if owner[i] == k-1 {
			cells = append(cells, c)
		}
	}
	s.Cells = cells
}

// ShardCosts is the estimated cost of each of n shards, for the log and the
// dry run.
func (s *Suite) ShardCosts(n int, reuse bool) []time.Duration {
	_, load := s.assignShards(n, reuse)
	return load
}

// assignShards gives each cell (by index) its shard (0-based): groups go
// largest first to the least loaded shard, the lowest index on a tie.
func (s *Suite) assignShards(n int, reuse bool) (owner map[int]int, load []time.Duration) {
	owner = map[int]int{}
	load = make([]time.Duration, n)
	for _, g := range s.shardGroups(reuse) {
		i := 0
		for j := range load {
			if load[j] < load[i] {
				i = j
			}
		}
		load[i] += g.cost
		for _, c := range g.cells {
			owner[c] = i
		}
	}
	return owner, load
}

func (s *Suite) shardGroups(reuse bool) []shardGroup {
	byKey := map[string]*shardGroup{}
	var groups []*shardGroup
	for i, c := range s.Cells {
		key := "cell|" + c.ID()
		reused := (reuse || c.Scenario.ReuseClusters) && c.Scenario.SkipFor(c.Cell) == nil
		if reused {
			key = "pool|" + engine.PoolKey(c.Scenario, c.Cell)
		}
		g := byKey[key]
		if g == nil {
			g = &shardGroup{key: key}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.cells = append(g.cells, i)
		g.cost += cellCost(c.Scenario, c.Cell, len(g.cells) > 1)
	}
	out := make([]shardGroup, len(groups))
	for i, g := range groups {
		out[i] = *g
	}
	// Largest first; the key breaks ties, so the order never depends on
	// the order of the scenarios' lists.
	slices.SortFunc(out, func(a, b shardGroup) int {
		return cmp.Or(cmp.Compare(b.cost, a.cost), cmp.Compare(a.key, b.key))
	})
	return out
}

// cellCost estimates one cell's wall time; onReusedCluster: a cell after
// the first on a reused cluster.
func cellCost(s *scenario.Scenario, c matrix.Cell, onReusedCluster bool) time.Duration {
	if s.SkipFor(c) != nil {
		return costSkipped
	}
	d := costKindCell
	if c.Provider == "qemu" {
		d = costVMCell
	}
	if onReusedCluster {
		d = costReusedCell
	}
	if c.UpgradeTo != "" {
		d += costUpgrade
	}
	return d + s.Soak.Duration
}
