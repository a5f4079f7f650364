package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/report"
)

func newReportCmd() *cobra.Command {
	var md, junit, htmlPath, out string
	var merge bool
	cmd := &cobra.Command{
		Use:   "report MATRIX.json | --merge SHARD.json... [-o MERGED.json]",
		Short: "Render a matrix.json as Markdown, JUnit or HTML; merge partial matrices",
		Long: `Report reads a matrix.json written by "cnimatrix run" (or the e2e suite) and
renders it. With no flags it prints Markdown to standard output; --markdown,
--junit and --html write those forms to files instead. The HTML page is
self-contained (no scripts, no external assets) and links each cell's
artifacts folder relative to the page. A cell whose outcome is missing or
unreadable is shown as unknown, never as pass.

With --merge, the arguments are partial matrices (e.g. one per parallel CI
job) and report merges them into one: the union of their cells. A cell that
is unknown in one shard takes its result from a shard that ran it; a cell
that two shards ran with a different outcome or root cause is an error
naming the cell and both shards. -o writes the merged matrix.json;
--markdown, --junit and --html render it as for a single matrix. With none
of -o, --markdown, --junit or --html, the merged matrix is printed as Markdown.

Exit status: 0 rendered, 2 unreadable matrix, shards that disagree, or bad flags.`,
		Example: `  cnimatrix report _out/matrix.json
  cnimatrix report _out/matrix.json --markdown summary.md --junit junit.xml
  cnimatrix report _out/matrix.json --html _out/matrix.html
  cnimatrix report --merge shard-amd64/matrix.json shard-arm64/matrix.json -o matrix.json --markdown matrix.md`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case merge && len(args) == 0:
				return usageError{errors.New("report --merge takes one or more shard matrix.json files")}
			case !merge && len(args) != 1:
				return usageError{fmt.Errorf("report takes one matrix.json, got %d arguments (to merge shards, use --merge)", len(args))}
			case !merge && out != "":
				return usageError{errors.New("-o writes a merged matrix: use it with --merge")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var m *matrix.Matrix
			if merge {
				shards := make([]matrix.Shard, len(args))
				for i, a := range args {
					sm, err := matrix.ReadJSON(a)
					if err != nil {
						return usageError{err}
					}
					shards[i] = matrix.Shard{Name: a, Matrix: sm}
				}
				merged, err := matrix.MergeShards(shards...)
				if err != nil {
					return usageError{err}
				}
				m = merged
				if out != "" {
					if err := m.WriteJSON(out); err != nil {
						return err
					}
					fmt.Fprintf(cmd.ErrOrStderr(), "merged %d shard(s) into %s: %s\n", len(args), out, m.Summary())
				}
			} else {
				single, err := matrix.ReadJSON(args[0])
				if err != nil {
					return usageError{err}
				}
				m = single
			}
			if md == "" && junit == "" && htmlPath == "" {
				if merge && out != "" {
					return nil
				}
				return report.Markdown(cmd.OutOrStdout(), m)
			}
			return report.Render(m, md, junit, htmlPath)
		},
	}
	cmd.Flags().StringVar(&md, "markdown", "", "write Markdown to this file")
	cmd.Flags().StringVar(&junit, "junit", "", "write JUnit XML to this file")
	cmd.Flags().StringVar(&htmlPath, "html", "", "write a self-contained HTML page to this file")
	cmd.Flags().BoolVar(&merge, "merge", false, "merge the given partial matrices (shards) into one")
	cmd.Flags().StringVarP(&out, "output", "o", "", "with --merge: write the merged matrix.json to this file")
	return cmd
}
