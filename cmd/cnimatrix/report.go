package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/report"
)

func newReportCmd() *cobra.Command {
	var md, junit string
	cmd := &cobra.Command{
		Use:   "report MATRIX.json",
		Short: "Render a matrix.json as Markdown and JUnit",
		Long: `Report reads a matrix.json written by "cnimatrix run" (or the e2e suite) and
renders it. With no flags it prints Markdown to standard output. A cell whose
outcome is missing or unreadable is shown as unknown, never as pass.`,
		Example: `  cnimatrix report _out/matrix.json
  cnimatrix report _out/matrix.json --markdown summary.md --junit junit.xml`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{fmt.Errorf("report takes one matrix.json, got %d arguments", len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := matrix.ReadJSON(args[0])
			if err != nil {
				return usageError{err}
			}
			if md == "" && junit == "" {
				return report.Markdown(cmd.OutOrStdout(), m)
			}
			return report.Render(m, md, junit)
		},
	}
	cmd.Flags().StringVar(&md, "markdown", "", "write Markdown to this file")
	cmd.Flags().StringVar(&junit, "junit", "", "write JUnit XML to this file")
	return cmd
}
