// Command cnimatrix answers: does CNI version X work on Kubernetes version Y
// on arch Z? It builds everything offline, creates real clusters, installs
// the CNI, checks it and writes a compatibility matrix.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes.
const (
	exitOK       = 0
	exitFailed   = 1 // the run completed and some cell did not have its expected outcome
	exitBadInput = 2 // bad scenario, unknown version, missing Docker engine, bad flags
)

// usageError marks errors that are the user's input, exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func badInput(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// failedError means the run finished but the matrix is not all as expected.
type failedError struct{ msg string }

func (e failedError) Error() string { return e.msg }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot()
	err := root.ExecuteContext(ctx)
	os.Exit(exitCode(err))
}

func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(os.Stderr, "cnimatrix:", err)
	var u usageError
	var f failedError
	switch {
	case errors.As(err, &u):
		return exitBadInput
	case errors.As(err, &f):
		return exitFailed
	}
	return exitFailed
}

type globalFlags struct {
	verbose  bool
	cacheDir string
}

func newRoot() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:   "cnimatrix",
		Short: "Test CNI versions on Kubernetes versions and architectures; write a compatibility matrix",
		Long: `cnimatrix answers one question: does CNI version X work on Kubernetes version Y on
arch Z (amd64 or arm64)? For every cell of a scenario it creates a real cluster,
installs the CNI, checks that nodes and CNI pods are Ready and that nginx is
reachable across nodes (pod IP, ClusterIP, DNS name, NodePort), and records a
pass/fail matrix with the evidence behind each verdict.

Everything runs offline: Kubernetes, the node images, the workloads and the
offline CNI are built locally from the Go module proxy and Debian packages and
served to the nodes from a local registry.

Exit status: 0 all cells as expected, 1 some cell not as expected,
2 bad input (scenario, version, flags) or a missing Docker engine.

Environment:
  CNIMATRIX_ROOT             the cnimatrix source tree: the manifests, fixtures and
                             image recipes it ships are read from there. Found
                             without it when you run from a checkout or run the
                             binary built into one (bin/cnimatrix).
  CNIMATRIX_CACHE            build and manifest cache (--cache; default
                             ~/.cache/cnimatrix)
  CNIMATRIX_MANIFEST_MIRROR  base URL (https:// or file://) serving upstream
                             manifests, for air-gapped machines
  CNIMATRIX_PINS             trust-on-first-use lock file of manifest sums
                             (default ~/.config/cnimatrix/pins.lock)
  CNIMATRIX_CALICO_DATA      Calico source releases for cni.calico.images: source
                             (default shared/calico beside the tree)
  CNIMATRIX_DEBIAN_MIRROR    Debian mirror for the images' root filesystems
  ARTIFACTS                  where failed cells' artifacts go (--artifacts)`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().BoolVarP(&g.verbose, "verbose", "v", false, "print detail lines, not only one line per phase")
	root.PersistentFlags().StringVar(&g.cacheDir, "cache", "", "build cache directory (default $CNIMATRIX_CACHE or ~/.cache/cnimatrix)")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	// Scenarios resolve downloaded manifests (Calico) from the cache that
	// --cache names, like every other cached input.
	root.PersistentPreRun = func(*cobra.Command, []string) {
		if g.cacheDir != "" {
			scenario.ManifestCacheDir = filepath.Join(g.cacheDir, "manifests")
		}
	}
	root.AddCommand(newRunCmd(g), newReportCmd(), newDiffCmd(), newImagesCmd(g), newVersionCmd(), newGCCmd(g), newAuditCmd(g), newCatalogCmd(g))
	// A verb that does not exist is bad input, with the list of verbs.
	root.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		var verbs []string
		for _, c := range cmd.Commands() {
			if c.IsAvailableCommand() {
				verbs = append(verbs, c.Name())
			}
		}
		return badInput("unknown command %q (commands: %s; cnimatrix --help)", args[0], strings.Join(verbs, ", "))
	}
	root.RunE = func(cmd *cobra.Command, args []string) error { return cmd.Help() }
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the cnimatrix version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), "cnimatrix", version)
			return nil
		},
	}
}
