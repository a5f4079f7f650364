package main

import (
	"errors"

	"github.com/spf13/cobra"

	kindprov "github.com/cnimatrix/cnimatrix/internal/cluster/kind"
	"github.com/cnimatrix/cnimatrix/internal/logx"
	"github.com/cnimatrix/cnimatrix/qemu"
)

func newGCCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "gc",
		Short: "Delete clusters, VMs, taps and networks that earlier runs left (e.g. with --keep)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			log := logx.Stderr(g.verbose)
			if err := kindprov.CheckDocker(ctx); err != nil {
				return usageError{err}
			}
			// VMs and taps first: they hang on the kind networks' bridges.
			return errors.Join(qemu.GC(ctx, log), kindprov.GC(ctx, log))
		},
	}
}
