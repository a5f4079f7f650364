package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/report"
)

func newDiffCmd() *cobra.Command {
	var expFile, md, page string
	cmd := &cobra.Command{
		Use:   "diff BASELINE.json NEW.json",
		Short: "Compare a matrix with a baseline; fail on regressions (a CI gate)",
		Long: `Diff compares two matrix.json files cell by cell and prints what changed.

A regression is a cell that passed in the baseline and does not pass now:
fail, infra-error, skipped and unknown all count, because a cell that was not
shown to pass is not a pass. Cells that did not pass and now do are fixed.
Cells only in NEW.json are listed as new and cells only in BASELINE.json as
removed; neither is a regression.

An expectations file lists known failures. A cell it selects whose current
outcome (and root cause, when the entry gives one) is the expected one is
reported as expected-fail, not as a regression. An entry whose cells now pass
is reported as one that can be removed. Format (YAML; selectors are globs;
reason is required, link strongly encouraged):

  expectations:
    - cni: calico
      cniVersion: v3.20.*
      arch: arm64
      outcome: fail             # default; or infra-error, skipped, unknown
      rootCause: arch-mismatch     # optional: must match the cell's root cause
      reason: calico/upgrade-ipam v3.20.5 has no arm64 image
      link: https://github.com/projectcalico/calico/issues/5963
    - cell: flannel-v0.28.10_k8s-v1.37.2_arm64_qemu   # or a cell ID (glob)
      reason: ...

The text report goes to standard output; --markdown also writes it as
Markdown, e.g. to "$GITHUB_STEP_SUMMARY"; --html writes NEW's matrix page
(one table per arch) with each regressed and fixed cell outlined.

Exit status: 0 no regressions, 1 some regression, 2 unreadable matrix or
invalid expectations file (errors name file:line).`,
		Example: `  cnimatrix diff baseline/matrix.json _out/matrix.json
  cnimatrix diff baseline/matrix.json _out/matrix.json --expectations scenarios/expectations.yaml --markdown diff.md`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usageError{fmt.Errorf("diff takes BASELINE.json and NEW.json, got %d arguments", len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			base, err := matrix.ReadJSON(args[0])
			if err != nil {
				return usageError{fmt.Errorf("baseline: %w", err)}
			}
			cur, err := matrix.ReadJSON(args[1])
			if err != nil {
				return usageError{fmt.Errorf("current: %w", err)}
			}
			var exp *matrix.Expectations
			if expFile != "" {
				exp, err = matrix.LoadExpectations(expFile)
				if err != nil {
					return usageError{err}
				}
				for _, w := range exp.Warnings {
					fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
				}
			}
			d := matrix.Diff(base, cur, exp)
			d.Baseline.Label, d.Current.Label = args[0], args[1]
			if err := d.Text(cmd.OutOrStdout()); err != nil {
				return fmt.Errorf("write diff: %w", err)
			}
			if md != "" {
				if err := writeMarkdownDiff(md, &d); err != nil {
					return err
				}
			}
			if page != "" {
				if err := writeHTMLDiff(page, cur, &d); err != nil {
					return err
				}
			}
			if n := d.Regressions(); n > 0 {
				return failedError{fmt.Sprintf("%d regression(s) against %s", n, args[0])}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&expFile, "expectations", "", "YAML file of known failures (see above)")
	cmd.Flags().StringVar(&md, "markdown", "", "also write the report as Markdown to this file")
	cmd.Flags().StringVar(&page, "html", "", "also write NEW's matrix page to this file with regressions and fixes against BASELINE outlined")
	return cmd
}

func writeMarkdownDiff(path string, d *matrix.DiffReport) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write diff markdown: %w", err)
	}
	if err := d.Markdown(f); err != nil {
		f.Close()
		return fmt.Errorf("write diff markdown %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write diff markdown %s: %w", path, err)
	}
	return nil
}

func writeHTMLDiff(path string, cur *matrix.Matrix, d *matrix.DiffReport) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write diff html: %w", err)
	}
	if err := report.HTMLDiff(f, cur, d); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
