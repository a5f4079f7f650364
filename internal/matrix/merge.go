package matrix

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Shard is a partial matrix and the name (usually its file) that error
// messages use for it.
type Shard struct {
	Name   string
	Matrix *Matrix
}

// Conflict is a cell two shards disagree about.
type Conflict struct {
	ID                 string
	ShardA, ShardB     string
	OutcomeA, OutcomeB Outcome
	CauseA, CauseB     string
}

func (c Conflict) String() string {
	return fmt.Sprintf("cell %s: %s says %s, %s says %s", c.ID, c.ShardA, outcomeCause(c.OutcomeA, c.CauseA), c.ShardB, outcomeCause(c.OutcomeB, c.CauseB))
}

// ConflictError lists every cell the shards disagree about.
type ConflictError struct{ Conflicts []Conflict }

func (e *ConflictError) Error() string {
	s := make([]string, len(e.Conflicts))
	for i, c := range e.Conflicts {
		s[i] = c.String()
	}
	return fmt.Sprintf("merge: shards disagree on %s:\n  %s", plural(len(e.Conflicts), "cell", "cells"), strings.Join(s, "\n  "))
}

// Merge is MergeShards with the shards named "shard 1", "shard 2", ...
func Merge(ms ...*Matrix) (*Matrix, error) {
	shards := make([]Shard, len(ms))
	for i, m := range ms {
		shards[i] = Shard{Name: fmt.Sprintf("shard %d", i+1), Matrix: m}
	}
	return MergeShards(shards...)
}

// MergeShards joins partial matrices, e.g. from parallel CI jobs, into one.
// The result holds the union of the cells. A cell that is unknown in one
// shard (not run there) takes its result from a shard that ran it. A cell
// that two shards both ran must have the same outcome and root cause in
// both, or the merge fails with a *ConflictError naming every such cell:
// picking either side would hide a flaky or host-dependent result. When they
// agree, the result with the later start is kept, as the freshest evidence.
//
// The merged scenario is the shards' scenario names joined by "+" when they
// differ; host fields that differ are joined by ",", so a matrix merged
// from an amd64 and an arm64 runner says so. Generated is the latest of the
// shards'. Results are sorted by cell ID so the output does not depend on
// shard order.
func MergeShards(shards ...Shard) (*Matrix, error) {
	if len(shards) == 0 {
		return nil, errors.New("merge: no matrices given")
	}
	out := &Matrix{Schema: SchemaVersion}
	owner := map[string]int{} // cell ID -> index in out.Results
	from := map[string]string{}
	var scenarios []string
	var conflicts []Conflict
	hosts := [5][]string{}
	for i, s := range shards {
		if s.Matrix == nil {
			return nil, fmt.Errorf("merge: %s: no matrix", shardName(s, i))
		}
		name := shardName(s, i)
		m := s.Matrix
		if m.Scenario != "" && !slices.Contains(scenarios, m.Scenario) {
			scenarios = append(scenarios, m.Scenario)
		}
		if m.Generated.After(out.Generated) {
			out.Generated = m.Generated
		}
		for f, v := range []string{m.Host.Arch, m.Host.Kernel, m.Host.Cgroup, m.Host.Hostname, m.Host.Version} {
			if v != "" && !slices.Contains(hosts[f], v) {
				hosts[f] = append(hosts[f], v)
			}
		}
		for _, r := range m.Results {
			if !r.Outcome.Valid() {
				r.Outcome = Unknown
			}
			r.ID = r.Cell.ID()
			j, seen := owner[r.ID]
			if !seen {
				owner[r.ID] = len(out.Results)
				from[r.ID] = name
				out.Results = append(out.Results, r)
				continue
			}
			prev := out.Results[j]
			switch {
			case r.Outcome == Unknown:
				// Not run in this shard: whatever is known already stands.
			case prev.Outcome == Unknown:
				out.Results[j], from[r.ID] = r, name
			case prev.Outcome != r.Outcome || prev.RootCause != r.RootCause:
				conflicts = append(conflicts, Conflict{ID: r.ID, ShardA: from[r.ID], OutcomeA: prev.Outcome, CauseA: prev.RootCause,
					ShardB: name, OutcomeB: r.Outcome, CauseB: r.RootCause})
			case r.Start.After(prev.Start):
				out.Results[j], from[r.ID] = r, name
			}
		}
	}
	if len(conflicts) > 0 {
		return nil, &ConflictError{Conflicts: conflicts}
	}
	out.Scenario = strings.Join(scenarios, "+")
	out.Host = Host{
		Arch: strings.Join(hosts[0], ","), Kernel: strings.Join(hosts[1], ","), Cgroup: strings.Join(hosts[2], ","),
		Hostname: strings.Join(hosts[3], ","), Version: strings.Join(hosts[4], ","),
	}
	out.Sort()
	return out, nil
}

func shardName(s Shard, i int) string {
	if s.Name != "" {
		return s.Name
	}
	return fmt.Sprintf("shard %d", i+1)
}
