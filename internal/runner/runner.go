// Package runner is the one run helper behind both shells, `cnimatrix run`
// and the Ginkgo suite in e2e/: load and validate scenarios (a cell ID in
// two of them is refused), plan every cell, prepare the images (a failure
// there is every cell's infra-error, the same in both shells), run cells,
// collect the matrix and compare it with the scenarios' expectations.
//
// The shells differ only in how cells are scheduled: the CLI runs them
// with --parallel goroutines (Run); the Ginkgo suite makes one spec per
// cell and lets Ginkgo schedule them, over processes with -p.
package runner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/catalog"
	"github.com/cnimatrix/cnimatrix/internal/diagnose"
	"github.com/cnimatrix/cnimatrix/internal/engine"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

// Cell is one cell and the scenario it comes from.
type Cell struct {
	Scenario *scenario.Scenario
	matrix.Cell
}

// Expect is what the cell's result should be.
func (c Cell) Expect() scenario.Expectation { return c.Scenario.ExpectFor(c.Cell) }

// Suite is the scenarios of one run and the cells selected from them.
type Suite struct {
	Scenarios []*scenario.Scenario
	Cells     []Cell
}

// LoadOptions say how scenarios are loaded.
type LoadOptions struct {
	// RepoRoot is the cnimatrix checkout (fixtures, local manifests).
	RepoRoot string
	// Filters select cells (engine.FilterCells); none selects all.
	Filters []string
	// ForPlan loads for a dry run: manifests not pinned or not cached yet
	// block their cells instead of failing the load.
	ForPlan bool
	// Existing, when its Kubeconfig is set, runs every cell on that
	// cluster (cnimatrix run --kubeconfig): provider existing.
	Existing scenario.Existing
}

// Load loads and validates the scenarios at paths. A scenario error (file
// and line) is returned as it is, for the shells to report as bad input.
func Load(paths []string, opts LoadOptions) (*Suite, error) {
	cat, err := catalog.Load()
	if err != nil {
		return nil, err
	}
	load := scenario.Load
	if opts.ForPlan {
		load = scenario.LoadForPlan
	}
	var ss []*scenario.Scenario
	for _, p := range paths {
		s, err := load(p, cat, opts.RepoRoot)
		if err != nil {
			return nil, err
		}
		if x := opts.Existing; x.Kubeconfig != "" {
			s.UseExisting(x.Kubeconfig, x.Context, x.Mode, x.ReplaceCNI)
		}
		if s.Provider == scenario.ProviderExisting && s.Existing.Kubeconfig == "" {
			return nil, &BadInputError{fmt.Errorf("%s: provider existing needs a kubeconfig: existing.kubeconfig in the scenario, or --kubeconfig FILE", p)}
		}
		if s.Provider == scenario.ProviderExisting && s.Existing.Mode == scenario.ExistingInstalled && s.Upgrade != nil {
			// An upgrade cell applies another version over the CNI: on a
			// cluster's own CNI that is the user's upgrade, not a check.
			return nil, &BadInputError{fmt.Errorf("%s: an upgrade scenario changes the CNI; on an existing cluster use --mode install (cnimatrix installs the version, upgrades it and removes it)", p)}
		}
		ss = append(ss, s)
	}
	return New(ss, opts.Filters)
}

// New makes a suite of already loaded scenarios; two cells with one ID are
// refused (one matrix holds every scenario's cells: they would overwrite
// each other; a scenario's variant keeps its own apart).
func New(ss []*scenario.Scenario, filters []string) (*Suite, error) {
	suite := &Suite{Scenarios: ss}
	seen := map[string]string{}
	var dups []error
	for _, s := range ss {
		cells, err := engine.FilterCells(s.Cells(), filters)
		if err != nil {
			return nil, &BadInputError{err}
		}
		for _, c := range s.Cells() {
			if other, dup := seen[c.ID()]; dup {
				dups = append(dups, fmt.Errorf("cell %s is in scenarios %s and %s: give one a variant", c.ID(), other, s.Name))
			}
			seen[c.ID()] = s.Name
		}
		for _, c := range cells {
			suite.Cells = append(suite.Cells, Cell{Scenario: s, Cell: c})
		}
	}
	if len(dups) > 0 {
		return nil, &BadInputError{errors.Join(dups...)}
	}
	return suite, nil
}

// BadInputError is input the user can fix (a filter, two cells with one ID).
type BadInputError struct{ Err error }

func (e *BadInputError) Error() string { return e.Err.Error() }
func (e *BadInputError) Unwrap() error { return e.Err }

// Name is the suite's scenarios' names joined by "+".
func (s *Suite) Name() string {
	var names []string
	for _, sc := range s.Scenarios {
		names = append(names, sc.Name)
	}
	return strings.Join(names, "+")
}

// Plans resolves every selected cell's plan, as a dry run prints them. An
// error names each cell whose manifest cannot be applied as configured.
func (s *Suite) Plans() ([]engine.CellPlan, error) {
	var plans []engine.CellPlan
	var errs []error
	for _, c := range s.Cells {
		p, err := engine.Plan(c.Scenario, c.Cell)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.ID(), err))
			continue
		}
		plans = append(plans, p)
	}
	return plans, errors.Join(errs...)
}

// Prepare builds (or finds cached) what every scenario's cells need and
// tells the engine which cells will run, so a reused cluster's last cell
// deletes it at once.
//
// Only the selected cells count: a --filter arch=amd64 run builds no VM
// disk for the scenario's arm64 cells.
func (s *Suite) Prepare(ctx context.Context, eng *engine.Engine) error {
	selected := map[*scenario.Scenario][]matrix.Cell{}
	for _, c := range s.Cells {
		selected[c.Scenario] = append(selected[c.Scenario], c.Cell)
	}
	for _, sc := range s.Scenarios {
		if err := eng.PrepareCells(ctx, sc, selected[sc]); err != nil {
			return fmt.Errorf("images for %s: %w", sc.Name, err)
		}
	}
	for _, sc := range s.Scenarios {
		eng.PlanReuse(sc, selected[sc])
	}
	return nil
}

// PrepareFailed is the result of a cell that could not start because the
// images could not be prepared: an infrastructure error of its images
// phase, in both shells.
func PrepareFailed(c matrix.Cell, err error) matrix.Result {
	now := time.Now().UTC()
	return matrix.Result{Cell: c, ID: c.ID(), Outcome: matrix.InfraError, Reason: "images: " + err.Error(), Start: now, RootCause: diagnose.Infra,
		Phases: []matrix.Phase{{Name: "images", Step: "images", Outcome: matrix.InfraError, Error: err.Error(), Start: now, Infra: true}}}
}

// Matrix is an empty matrix of the suite's cells (each unknown until
// recorded).
func (s *Suite) Matrix(host matrix.Host) *matrix.Matrix {
	var cells []matrix.Cell
	for _, c := range s.Cells {
		cells = append(cells, c.Cell)
	}
	m := matrix.New(s.Name(), cells)
	m.Host = host
	return m
}

// Run runs every cell, as many at once as par admits, recording each
// result in m as it ends. prepared is Prepare's error: when set, no cell
// runs and each is recorded as PrepareFailed.
func (s *Suite) Run(ctx context.Context, eng *engine.Engine, m *matrix.Matrix, par Parallelism, prepared error) {
	var mu sync.Mutex
	record := func(r matrix.Result) {
		mu.Lock()
		defer mu.Unlock()
		m.Record(r)
	}
	if prepared != nil {
		for _, c := range s.Cells {
			r := PrepareFailed(c.Cell, prepared)
			if ctx.Err() != nil {
				// Interrupted while building: no verdict, not a broken host.
				r.Outcome, r.RootCause = matrix.Unknown, ""
				r.Reason = fmt.Sprintf("interrupted (%v) during images", context.Cause(ctx))
			}
			record(r)
		}
		return
	}
	runAdmitted(ctx, s.Cells, par, func(c Cell) { record(eng.RunCell(ctx, c.Scenario, c.Cell)) })
}

// Unexpected compares every recorded result with its cell's expectation
// and returns one error per cell that differs.
func (s *Suite) Unexpected(m *matrix.Matrix) []error {
	var bad []error
	for _, c := range s.Cells {
		r, ok := m.Get(c.ID())
		if !ok {
			bad = append(bad, fmt.Errorf("cell %s: no result", c.ID()))
			continue
		}
		if err := engine.CheckExpectation(c.Expect(), r); err != nil {
			bad = append(bad, err)
		}
	}
	return bad
}
