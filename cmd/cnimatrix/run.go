package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cnimatrix/cnimatrix/internal/artifacts"
	"github.com/cnimatrix/cnimatrix/internal/engine"
	"github.com/cnimatrix/cnimatrix/internal/images"
	"github.com/cnimatrix/cnimatrix/internal/logx"
	"github.com/cnimatrix/cnimatrix/internal/repo"
	"github.com/cnimatrix/cnimatrix/internal/report"
	"github.com/cnimatrix/cnimatrix/internal/runner"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

// loadSuite loads the scenarios at paths with the run helper: a scenario
// error (file and line), two cells with one ID or a bad filter is bad input.
func loadSuite(paths, filters []string, forPlan bool, existing scenario.Existing) (*runner.Suite, error) {
	root, err := repo.Root()
	if err != nil {
		return nil, usageError{err}
	}
	suite, err := runner.Load(paths, runner.LoadOptions{RepoRoot: root, Filters: filters, ForPlan: forPlan, Existing: existing})
	if err != nil {
		return nil, usageError{err}
	}
	return suite, nil
}

func newRunCmd(g *globalFlags) *cobra.Command {
	var (
		out, artifactsDir string
		keep, reuse       bool
		dryRun            bool
		filters           []string
		parallel          string
		preflight         string
		soak, soakEvery   time.Duration
		soakMin           float64
		shard             string
		existing          scenario.Existing
		pullThrough       bool
		upstreams         []string
		upstreamNodes     bool
	)
	cmd := &cobra.Command{
		Use:   "run SCENARIO.yaml...",
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
cannot be audited; off skips it.

A scenario with an upgrade block (upgrade: {to: VERSION}) makes upgrade-path
cells: install the cell's version, run the checks, apply TO's manifest in
place while nginx is fetched across nodes every upgrade.probeInterval, fail
when more than upgrade.maxFailedProbes of those requests failed, then run the
checks again (phases "upgrade", "upgrade-availability", "after-upgrade
check:*").

--soak DURATION keeps fetching nginx across nodes after a cell's checks
passed and records availability, failed requests and latency percentiles
(phase "soak"); the cell fails below --soak-min-availability percent.

--reuse-clusters (or reuseClusters: true in the scenario) is a speed mode:
cells that need the same cluster (provider, Kubernetes, arch, nodes) run on
one cluster, one after another. Between them the phase "uninstall" deletes
the checks' namespace and the CNI's objects and returns every node to what it
had before any CNI (files under /etc/cni/net.d, /opt/cni/bin and the CNIs'
state directories, links, routes, iptables chains and rules, nftables tables,
ipsets, node annotations); what it cannot remove fails the phase, and that
cluster is deleted instead of reused. Cells still run one at a time per
cluster; it does not go with --keep.

--shard K/N runs the K-th of N parts of the selected cells, for N CI jobs or
machines: every machine computes the same split from the same scenarios,
filters and N; cells that share a reused cluster stay in one shard; shards
are balanced by each cell's estimated cost (a cell with QEMU VM nodes weighs
about four kind cells). Each shard writes its own matrix (an empty one when
it has no cells); 'cnimatrix report --merge' joins them into the matrix one
run would have written. --dry-run shows a shard's cells.

--kubeconfig FILE [--context C] (or provider: existing with an existing block
in the scenario) runs the cells on a cluster cnimatrix did not create, e.g.
before upgrading it. In installed mode (the default) the CNI is already
there: cnimatrix finds it (the DaemonSets that mount /etc/cni/net.d and their
family's Deployments), records its name and version, and runs the checks on
the nodes of the cell's arch (a cluster without one skips the cell). In
install mode it applies the version under test, checks it and deletes what
it applied; it refuses to start beside another CNI unless --replace-cni.
Everything cnimatrix adds lives in the namespace cnimatrix-checks, removed at
the end (--keep leaves it; 'cnimatrix gc --kubeconfig FILE' removes it).
Nothing it did not create is edited or deleted. docs/existing-cluster.md
has the ClusterRole it needs.

The nodes pull every image from the run's own registry, which holds what
cnimatrix builds and what 'cnimatrix images import' loaded; anything else is
not found, so a run works offline and says which image it lacked. With
--pull-through the registry fetches such an image from its real registry
(docker.io, quay.io, registry.k8s.io, ghcr.io) when that answers: released
Calico images for a user online (cni.calico.images: upstream), audited by the
preflight like any other. --upstream HOST=URL fetches HOST's images from URL
instead (a company mirror) and implies --pull-through. Layers are kept in the
cache (<cache>/pulled) for the next run; tags are resolved again every run.
--upstream-node-images boots the kind nodes from kind's own published node
image of the cell's Kubernetes version (kindest/node:<version>) fetched the
same way, skipping the Kubernetes build; the matrix says which node image a
cell booted (nodeImage). VM nodes still run the kubelet built here.`,
		Example: `  cnimatrix run scenarios/offline-flannel.yaml
  cnimatrix run scenarios/offline-flannel.yaml --filter k8s=v1.37.2 --keep -v
  cnimatrix run scenarios/offline-flannel-upgrade.yaml
  cnimatrix run scenarios/offline-flannel-k8s-versions.yaml --reuse-clusters
  cnimatrix run scenarios/offline-flannel.yaml --soak 10h --soak-interval 5s --soak-min-availability 99.9
  cnimatrix run scenarios/calico-arm64.yaml --shard 3/8 --out _out/shard-3
  cnimatrix run scenarios/calico-arm64.yaml --kubeconfig ~/.kube/config --context prod-arm64`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError{fmt.Errorf("run takes one or more scenario files, got none")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if existing.Kubeconfig == "" && (existing.Context != "" || existing.Mode != "" || existing.ReplaceCNI) {
				return badInput("--context, --mode and --replace-cni go with --kubeconfig")
			}
			switch existing.Mode {
			case "", scenario.ExistingInstalled, scenario.ExistingInstall:
			default:
				return badInput("--mode %q: want installed or install", existing.Mode)
			}
			suite, err := loadSuite(args, filters, dryRun, existing)
			if err != nil {
				return err
			}
			shardNote := ""
			if shard != "" {
				k, n, err := runner.ParseShard(shard)
				if err != nil {
					return badInput("--%v", err)
				}
				if len(suite.Cells) == 0 {
					return badInput("no cell of %s matches the filters %v", strings.Join(args, ", "), filters)
				}
				costs := suite.ShardCosts(n, reuse)
				suite.Shard(k, n, reuse)
				shardNote = fmt.Sprintf("shard %d/%d: %d cells, estimated %s (every shard: %v)", k, n, len(suite.Cells), costs[k-1], costs)
				if len(suite.Cells) == 0 {
					// More shards than groups of cells: this one has
					// nothing to do, and says so in an empty matrix the
					// merge can read.
					files, err := report.WriteAll(out, suite.Matrix(engine.HostInfo(version)))
					if err != nil {
						return err
					}
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: nothing to run; wrote %s\n", shardNote, files.JSON)
					return nil
				}
			}
			if len(suite.Cells) == 0 {
				return badInput("no cell of %s matches the filters %v", strings.Join(args, ", "), filters)
			}
			par, err := runner.ParseParallel(parallel)
			if err != nil {
				return badInput("%v", err)
			}
			if soak < 0 || soakEvery < 0 || soakMin <= 0 || soakMin > 100 {
				return badInput("--soak and --soak-interval must not be negative, --soak-min-availability must be a percentage above 0, at most 100")
			}
			if soak > 0 && soakEvery >= soak {
				return badInput("--soak-interval %s must be shorter than --soak %s", soakEvery, soak)
			}
			if reuse && keep {
				return badInput("--reuse-clusters and --keep do not go together: a reused cluster is uninstalled for the next cell, a kept one is left as its cell left it")
			}
			if fi, err := os.Stat(out); err == nil && !fi.IsDir() {
				return badInput("--out %s is a file; it names the directory for the matrix files", out)
			}
			ups, err := pullThroughUpstreams(pullThrough || upstreamNodes, upstreams)
			if err != nil {
				return badInput("%v", err)
			}
			pf, err := engine.ParsePreflight(preflight)
			if err != nil {
				return badInput("--%v", err)
			}
			if dryRun {
				if shardNote != "" {
					fmt.Fprintln(cmd.OutOrStdout(), shardNote)
				}
				return printPlans(cmd.OutOrStdout(), suite)
			}
			log := logx.Stderr(g.verbose)
			log.Infof("scenario %s: %d cells", suite.Name(), len(suite.Cells))
			if shardNote != "" {
				log.Infof("%s", shardNote)
			}
			eng, err := engine.Start(ctx, engine.Options{
				Log: log, CacheDir: g.cacheDir, Keep: keep,
				ArtifactsDir: artifacts.Dir(cmp.Or(artifactsDir, filepath.Join(out, "artifacts"))),
				WorkDir:      filepath.Join(out, "clusters"),
				Preflight:    pf,
				Soak:         soak, SoakInterval: soakEvery, SoakMinAvailability: soakMin,
				ReuseClusters:      reuse,
				PullThrough:        ups,
				UpstreamNodeImages: upstreamNodes,
			})
			if err != nil {
				var he *engine.HostError
				if errors.As(err, &he) {
					return usageError{err}
				}
				return err
			}
			defer func() {
				// Also after Ctrl-C: what the run made is removed on a
				// context of its own.
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
				defer cancel()
				if err := eng.Close(cctx); err != nil {
					log.Infof("cleanup: %v", err)
				}
			}()
			m := suite.Matrix(engine.HostInfo(version))
			suite.Run(ctx, eng, m, par, suite.Prepare(ctx, eng))
			files, err := report.WriteAll(out, m)
			if err != nil {
				return err
			}
			log.Infof("%s", m.Summary())
			log.Infof("matrix: %s, %s, %s, %s", files.JSON, files.Markdown, files.JUnit, files.HTML)
			if bad := suite.Unexpected(m); len(bad) > 0 {
				return failedError{fmt.Sprintf("%d of %d cells not as expected:\n%v", len(bad), len(m.Results), errors.Join(bad...))}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "_out", "directory for matrix.json, matrix.md, matrix.xml, matrix.html")
	cmd.Flags().StringVar(&artifactsDir, "artifacts", "", "directory for per-cell artifacts of failed cells (default <out>/artifacts; $ARTIFACTS overrides)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "validate the scenario and print each cell's plan (cluster, manifest and pin, edits, images and where each comes from, checks, expected outcome); creates nothing, needs no Docker engine")
	cmd.Flags().BoolVar(&keep, "keep", false, "keep clusters after the run for debugging (prints how to reach them)")
	cmd.Flags().StringArrayVar(&filters, "filter", nil, "run only matching cells: k8s=v1.37.2, arch=amd64, provider=kind, cni=flannel, <cni>=<version> (repeatable; all must match)")
	cmd.Flags().BoolVar(&reuse, "reuse-clusters", false, "run cells that need the same cluster on one cluster, uninstalling the CNI in between (speed mode; see above)")
	cmd.Flags().StringVar(&shard, "shard", "", "run only shard K/N of the selected cells (e.g. 2/8): a deterministic split balanced by estimated cost, cells sharing a reused cluster kept together; merge the shards' matrices with 'cnimatrix report --merge'")
	cmd.Flags().StringVar(&existing.Kubeconfig, "kubeconfig", "", "run every cell on the existing cluster of this kubeconfig (provider existing; see above) instead of creating clusters")
	cmd.Flags().StringVar(&existing.Context, "context", "", "with --kubeconfig: the context to use (default: its current context)")
	cmd.Flags().StringVar(&existing.Mode, "mode", "", "with --kubeconfig: installed (default: check the CNI the cluster runs) or install (install the version under test, check, remove it)")
	cmd.Flags().BoolVar(&existing.ReplaceCNI, "replace-cni", false, "with --kubeconfig --mode install: start though the cluster already runs a CNI")
	cmd.Flags().StringVar(&parallel, "parallel", "1", "cells to run at once (each is a cluster: mind the cores), or auto: as many as the host's cores allow, a kind cell counting 2 cores and a cell with a QEMU VM 4 (on 2 cores: one at a time, measured fastest)")
	cmd.Flags().BoolVar(&pullThrough, "pull-through", false, "fetch images the run neither builds nor imported from their real registries when they answer (see above)")
	cmd.Flags().BoolVar(&upstreamNodes, "upstream-node-images", false, "boot kind nodes from kind's published node image (kindest/node:<version>, fetched through docker.io's upstream) instead of building Kubernetes here; a version it lacks is built as usual (implies --pull-through)")
	cmd.Flags().StringArrayVar(&upstreams, "upstream", nil, "with pull-through, fetch registry HOST's images from URL: HOST=URL, e.g. docker.io=https://mirror.example.com (repeatable; implies --pull-through)")
	cmd.Flags().StringVar(&preflight, "preflight", string(engine.PreflightWarn), "audit each cell's images for its arch before creating its cluster: warn (record, run anyway), strict (fail the cell), off")
	cmd.Flags().DurationVar(&soak, "soak", 0, "after a cell's checks pass, keep fetching nginx across nodes for this long (e.g. 10m, 10h) and record availability and latency")
	cmd.Flags().DurationVar(&soakEvery, "soak-interval", time.Second, "how often the soak fetches nginx from every probe pod to every nginx pod on another node")
	cmd.Flags().Float64Var(&soakMin, "soak-min-availability", 100, "percent of soak requests that must succeed for the cell to pass")
	return cmd
}

// printPlans prints every cell's plan; a cell whose manifest cannot be
// configured is bad input. A cell whose downloaded manifest is not pinned
// or cached yet is printed as such: the scenario is valid, and the plan
// says what to do before a run.
func printPlans(w io.Writer, suite *runner.Suite) error {
	fmt.Fprintf(w, "scenario %s: %d cells (dry run: nothing is created)\n\n", suite.Name(), len(suite.Cells))
	plans, err := suite.Plans()
	blocked := 0
	for _, p := range plans {
		fmt.Fprintln(w, p.String())
		if p.Blocked != "" {
			blocked++
		}
	}
	if blocked > 0 {
		fmt.Fprintf(w, "%d of %d cells cannot run until their manifests are pinned and cached (each says how); a run of this scenario is refused until then\n", blocked, len(suite.Cells))
	}
	if err != nil {
		return usageError{err}
	}
	return nil
}

// pullThroughUpstreams is the registry's pull-through configuration from
// --pull-through and --upstream: nil when neither is given.
func pullThroughUpstreams(on bool, flags []string) (images.Upstreams, error) {
	if !on && len(flags) == 0 {
		return nil, nil
	}
	ups := images.DefaultUpstreams()
	for _, f := range flags {
		host, base, err := images.ParseUpstream(f)
		if err != nil {
			return nil, fmt.Errorf("--upstream: %w", err)
		}
		if !slices.Contains(engine.Upstreams, host) {
			return nil, fmt.Errorf("--upstream %s: the nodes pull only %s through the run's registry", f, strings.Join(engine.Upstreams, ", "))
		}
		ups[host] = base
	}
	return ups, nil
}
