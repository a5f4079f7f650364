package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
	kindprov "github.com/cnimatrix/cnimatrix/internal/cluster/kind"
	"github.com/cnimatrix/cnimatrix/internal/logx"
	"github.com/cnimatrix/cnimatrix/qemu"
)

func newGCCmd(g *globalFlags) *cobra.Command {
	var force bool
	var out string
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Delete clusters, VMs, taps and networks that earlier runs left (e.g. with --keep)",
		Long: `gc deletes what runs of cnimatrix left behind: kind clusters, QEMU VMs, taps and
Docker networks named cnimatrix-*, and what a killed run left on disk: its local
registry's blobs in $TMPDIR and its clusters' work folders (kubeconfigs, VM
overlay disks) under --out's clusters/. A run in progress holds a lock for its run ID
(in ` + "`$TMPDIR/cnimatrix-runs`" + `) and gc leaves what it made alone, saying so; a run
that was killed released its lock with its process. --force deletes everything.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			log := logx.Stderr(g.verbose)
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
	return cmd
}
