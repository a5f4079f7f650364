package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/cnimatrix/cnimatrix/internal/artifacts"
	"github.com/cnimatrix/cnimatrix/internal/catalog"
	"github.com/cnimatrix/cnimatrix/internal/engine"
	"github.com/cnimatrix/cnimatrix/internal/images"
	"github.com/cnimatrix/cnimatrix/internal/logx"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/report"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

func loadScenario(path string) (*scenario.Scenario, error) {
	cat, err := catalog.Load()
	if err != nil {
		return nil, err
	}
	root, err := images.RepoRoot()
	if err != nil {
		return nil, fmt.Errorf("find the cnimatrix checkout (fixtures live there): %w", err)
	}
	s, err := scenario.Load(path, cat, root)
	if err != nil {
		return nil, usageError{err}
	}
	return s, nil
}

func newRunCmd(g *globalFlags) *cobra.Command {
	var (
		out, artifactsDir string
		keep              bool
		filters           []string
		parallel          int
		preflight         string
	)
	cmd := &cobra.Command{
		Use:   "run SCENARIO.yaml",
		Short: "Run a scenario's cells on real clusters and write the matrix",
		Long: `Run expands the scenario into cells (CNI version x Kubernetes version x arch x
provider), builds the images it needs (cached), and for each cell creates a
cluster, installs the CNI, runs the checks and deletes the cluster.

It writes matrix.json (the source of truth), matrix.md, matrix.xml (JUnit,
one testcase per phase) and matrix.html into --out, and for each cell that did not pass a
folder of artifacts (pods, events, logs, node journals) into --artifacts
($ARTIFACTS when set).

Before creating a cell's cluster, the preflight audits every image of the
cell's manifest for the cell's arch in the registry its nodes pull from (as
'cnimatrix audit' does): --preflight=warn (default) records the findings as
the phase "preflight" and runs the cell anyway, so the runtime's own outcome
still shows; strict fails the cell in seconds, without a cluster, when an
image has no variant for the arch, holds binaries of another machine, or
cannot be audited; off skips it.`,
		Example: `  cnimatrix run scenarios/offline-flannel.yaml
  cnimatrix run scenarios/offline-flannel.yaml --filter k8s=v1.37.2 --keep -v`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{fmt.Errorf("run takes one scenario file, got %d arguments", len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			s, err := loadScenario(args[0])
			if err != nil {
				return err
			}
			cells, err := engine.FilterCells(s.Cells(), filters)
			if err != nil {
				return usageError{err}
			}
			if len(cells) == 0 {
				return badInput("no cell of %s matches the filters %v", args[0], filters)
			}
			if parallel < 1 {
				return badInput("--parallel must be at least 1")
			}
			pf, err := engine.ParsePreflight(preflight)
			if err != nil {
				return badInput("--%v", err)
			}
			log := logx.Stderr(g.verbose)
			log.Infof("scenario %s: %d cells", s.Name, len(cells))
			eng, err := engine.Start(ctx, engine.Options{
				Log: log, CacheDir: g.cacheDir, Keep: keep,
				ArtifactsDir: artifacts.Dir(artifactsDir),
				WorkDir:      filepath.Join(out, "clusters"),
				Preflight:    pf,
			})
			if err != nil {
				var he *engine.HostError
				if errors.As(err, &he) {
					return usageError{err}
				}
				return err
			}
			defer func() {
				if err := eng.Close(ctx); err != nil {
					log.Infof("cleanup: %v", err)
				}
			}()
			m := matrix.New(s.Name, cells)
			m.Host = engine.HostInfo(version)
			if err := eng.Prepare(ctx, s); err != nil {
				for _, c := range cells {
					m.Record(matrix.Result{Cell: c, Outcome: matrix.InfraError, Reason: "images: " + err.Error(), Start: time.Now().UTC(),
						Phases: []matrix.Phase{{Name: "images", Outcome: matrix.InfraError, Error: err.Error(), Start: time.Now().UTC(), Infra: true}}})
				}
			} else {
				var mu sync.Mutex
				sem := make(chan struct{}, parallel)
				var wg sync.WaitGroup
				for _, c := range cells {
					wg.Add(1)
					sem <- struct{}{}
					go func() {
						defer wg.Done()
						defer func() { <-sem }()
						r := eng.RunCell(ctx, s, c)
						mu.Lock()
						m.Record(r)
						mu.Unlock()
					}()
				}
				wg.Wait()
			}
			files, err := report.WriteAll(out, m)
			if err != nil {
				return err
			}
			log.Infof("%s", m.Summary())
			log.Infof("matrix: %s, %s, %s, %s", files.JSON, files.Markdown, files.JUnit, files.HTML)
			var bad []error
			for _, r := range m.Results {
				if err := engine.CheckExpectation(s.ExpectFor(r.Cell), r); err != nil {
					bad = append(bad, err)
				}
			}
			if len(bad) > 0 {
				return failedError{fmt.Sprintf("%d of %d cells not as expected:\n%v", len(bad), len(m.Results), errors.Join(bad...))}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "_out", "directory for matrix.json, matrix.md, matrix.xml, matrix.html")
	cmd.Flags().StringVar(&artifactsDir, "artifacts", "_out/artifacts", "directory for per-cell artifacts of failed cells ($ARTIFACTS overrides)")
	cmd.Flags().BoolVar(&keep, "keep", false, "keep clusters after the run for debugging (prints how to reach them)")
	cmd.Flags().StringArrayVar(&filters, "filter", nil, "run only matching cells: k8s=v1.37.2, arch=amd64, provider=kind, cni=flannel, <cni>=<version> (repeatable; all must match)")
	cmd.Flags().IntVar(&parallel, "parallel", 1, "cells to run at once (each is a cluster: mind the cores)")
	cmd.Flags().StringVar(&preflight, "preflight", string(engine.PreflightWarn), "audit each cell's images for its arch before creating its cluster: warn (record, run anyway), strict (fail the cell), off")
	return cmd
}
