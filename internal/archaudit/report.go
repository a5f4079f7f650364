package archaudit

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteTable prints one row per finding and a summary line.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FINDING\tIMAGE\tWORKLOAD\tCONTAINER\tPLATFORMS\tREASON")
	for _, f := range r.Findings {
		c := f.Container
		if f.InitContainer {
			c += " (init)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", f.Kind, f.Image, dash(f.Workload), dash(c), dash(strings.Join(f.Platforms, ",")), oneLine(f.Reason))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, r.Summary())
	return err
}

// Summary is one line: how many findings of each kind for which arch.
func (r *Report) Summary() string {
	return fmt.Sprintf("linux/%s: %d images: %d ok, %d no-variant, %d mislabeled, %d error",
		r.Arch, len(r.Findings), r.Count(OK), r.Count(NoVariant), r.Count(Mislabeled), r.Count(Error))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
