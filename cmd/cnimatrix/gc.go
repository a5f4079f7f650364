package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
	"github.com/cnimatrix/cnimatrix/internal/cluster/existing"
	kindprov "github.com/cnimatrix/cnimatrix/internal/cluster/kind"
	"github.com/cnimatrix/cnimatrix/internal/logx"
	"github.com/cnimatrix/cnimatrix/qemu"
)

func newGCCmd(g *globalFlags) *cobra.Command {
	var force bool
	var out, kubeconfig, kctx string
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Delete clusters, VMs, taps and networks that earlier runs left (e.g. with --keep)",
		Long: `gc deletes what runs of cnimatrix left behind: kind clusters, QEMU VMs, taps and
Docker networks named cnimatrix-*, and what a killed run left on disk: its local
registry's blobs in $TMPDIR and its clusters' work folders (kubeconfigs, VM
overlay disks) under --out's clusters/. A run in progress holds a lock for its run ID
(in ` + "`$TMPDIR/cnimatrix-runs`" + `) and gc leaves what it made alone, saying so; a run
that was killed released its lock with its process. --force deletes everything.

With --kubeconfig FILE [--context C] it cleans up a cluster cnimatrix did not
create (provider existing) instead: the namespace cnimatrix-checks its runs
made there (a namespace the user provided is left, as nothing of it is
cnimatrix's but what the checks made, which goes with the next run). It does
not touch Docker then.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			log := logx.Stderr(g.verbose)
			if kubeconfig != "" {
				return existing.GC(ctx, log, kubeconfig, kctx, force)
			}
			if kctx != "" {
				return badInput("--context goes with --kubeconfig")
			}
			if err := kindprov.CheckDocker(ctx); err != nil {
				return usageError{err}
			}
			// VMs and taps first: they hang on the kind networks' bridges.
			err := errors.Join(qemu.GC(ctx, log, force), kindprov.GC(ctx, log, force))
			_, ferr := cluster.GCRunFiles(log, out, force)
			return errors.Join(err, ferr)
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "also delete what runs in progress made")
	cmd.Flags().StringVarP(&out, "out", "o", "_out", "the --out of the runs to clean up after (their clusters' work folders are in its clusters/)")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "clean up the existing cluster of this kubeconfig (what provider-existing runs left there) instead of this host")
	cmd.Flags().StringVar(&kctx, "context", "", "with --kubeconfig: the context to use (default: its current context)")
	return cmd
}
