package runner

import (
	"hash/fnv"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/engine"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

// shardSuite is 72 cells: 9 Calico versions x 4 Kubernetes versions x 2
// arches (amd64 on kind, arm64 on QEMU VMs), plus a reused-cluster scenario
// of 6 flannel cells.
func shardSuite(t *testing.T) *Suite {
	t.Helper()
	calico := &scenario.Scenario{Name: "calico-matrix", Provider: "auto", Nodes: 2,
		CNI:        scenario.CNISpec{Name: "calico", Versions: []string{"v3.24.6", "v3.25.2", "v3.26.5", "v3.27.5", "v3.28.5", "v3.29.6", "v3.30.5", "v3.31.3", "v3.32.1"}},
		Kubernetes: []string{"v1.34.4", "v1.35.3", "v1.36.2", "v1.37.2"}, Arch: []string{"amd64", "arm64"}}
	reused := &scenario.Scenario{Name: "flannel-reused", Provider: "kind", Nodes: 2, ReuseClusters: true, Variant: "reused",
		CNI:        scenario.CNISpec{Name: "flannel", Versions: []string{"v0.26.0", "v0.27.0", "v0.28.10"}},
		Kubernetes: []string{"v1.36.2", "v1.37.2"}, Arch: []string{"amd64"}}
	s, err := New([]*scenario.Scenario{calico, reused}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Cells) != 78 {
		t.Fatalf("%d cells", len(s.Cells))
	}
	return s
}

// Every N splits the cells into N disjoint shards whose union is the whole;
// the split is the same every time; cells of one reused cluster share a
// shard; no shard's estimate exceeds the lightest by more than the largest
// group; and merging the shards' matrices gives the matrix one run writes.
func TestShardsPartitionAndMergeBack(t *testing.T) {
	for n := 1; n <= 9; n++ {
		owner := map[string]int{}
		var shards []matrix.Shard
		for k := 1; k <= n; k++ {
			s := shardSuite(t)
			s.Shard(k, n, false)
			again := shardSuite(t)
			again.Shard(k, n, false)
			if !slices.Equal(ids(s), ids(again)) {
				t.Fatalf("%d/%d: two splits differ", k, n)
			}
			for _, id := range ids(s) {
				if prev, dup := owner[id]; dup {
					t.Fatalf("%d/%d: cell %s is also in shard %d", k, n, id, prev)
				}
				owner[id] = k
			}
			m := s.Matrix(matrix.Host{Arch: "amd64", Hostname: "shard"})
			for _, c := range s.Cells {
				m.Record(fakeResult(c.Cell))
			}
			// Through the files, as CI jobs hand them to the merge job.
			path := filepath.Join(t.TempDir(), "matrix.json")
			if err := m.WriteJSON(path); err != nil {
				t.Fatal(err)
			}
			back, err := matrix.ReadJSON(path)
			if err != nil {
				t.Fatal(err)
			}
			shards = append(shards, matrix.Shard{Name: path, Matrix: back})
		}
		whole := shardSuite(t)
		if len(owner) != len(whole.Cells) {
			t.Fatalf("n=%d: shards hold %d cells, the suite %d", n, len(owner), len(whole.Cells))
		}
		pools := map[string]int{}
		for _, c := range whole.Cells {
			if !c.Scenario.ReuseClusters {
				continue
			}
			key := engine.PoolKey(c.Scenario, c.Cell)
			if k, seen := pools[key]; seen && k != owner[c.ID()] {
				t.Errorf("n=%d: cells of one reused cluster in shards %d and %d", n, k, owner[c.ID()])
			}
			pools[key] = owner[c.ID()]
		}
		if len(pools) != 2 {
			t.Fatalf("%d reused clusters, want 2", len(pools))
		}
		costs := whole.ShardCosts(n, false)
		if spread := slices.Max(costs) - slices.Min(costs); n <= 8 && spread > costVMCell {
			t.Errorf("n=%d: shard estimates %v differ by %s, more than one VM cell", n, costs, spread)
		}

		merged, err := matrix.MergeShards(shards...)
		if err != nil {
			t.Fatalf("n=%d: merge: %v", n, err)
		}
		single := whole.Matrix(matrix.Host{Arch: "amd64", Hostname: "single"})
		for _, c := range whole.Cells {
			single.Record(fakeResult(c.Cell))
		}
		merged.Sort()
		single.Sort()
		if got, want := outcomes(merged), outcomes(single); !slices.Equal(got, want) {
			t.Errorf("n=%d: merged shards differ from one run:\n got %v\nwant %v", n, got, want)
		}
	}
}

func TestParseShard(t *testing.T) {
	if k, n, err := ParseShard("3/8"); err != nil || k != 3 || n != 8 {
		t.Errorf("3/8: %d %d %v", k, n, err)
	}
	for _, bad := range []string{"", "3", "0/8", "9/8", "a/b", "1/0", "-1/2"} {
		if _, _, err := ParseShard(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func ids(s *Suite) []string {
	var out []string
	for _, c := range s.Cells {
		out = append(out, c.ID())
	}
	return out
}

func outcomes(m *matrix.Matrix) []string {
	var out []string
	for _, r := range m.Results {
		out = append(out, r.ID+" "+string(r.Outcome)+" "+r.RootCause)
	}
	return out
}

// fakeResult is a cell's result as a run would record it, decided by the
// cell's ID so every shard and the single run agree.
func fakeResult(c matrix.Cell) matrix.Result {
	h := fnv.New32a()
	h.Write([]byte(c.ID()))
	r := matrix.Result{Cell: c, ID: c.ID(), Outcome: matrix.Pass, Start: time.Unix(1, 0).UTC(), DurationMS: 1000}
	if h.Sum32()%3 == 0 {
		r.Outcome, r.RootCause, r.Reason = matrix.Fail, "exec-format", "calico-node: exec format error"
	}
	return r
}
