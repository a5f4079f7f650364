package matrix

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// Change is one cell's difference between a baseline and a current matrix.
type Change struct {
	ID   string
	Cell Cell
	// Before is the baseline outcome ("" for a new cell), After the current
	// one ("" for a removed cell).
	Before, After           Outcome
	BeforeCause, AfterCause string
	// Reason is the current result's reason (the baseline's for a removed cell).
	Reason string
	// Expectation is the entry that selected the cell, if any.
	Expectation *Expectation
	// Note explains a judgement, e.g. why an expectation did not apply.
	Note string
}

// StaleExpectation is an expectation that selects cells which now pass.
type StaleExpectation struct {
	Expectation *Expectation
	Passing     []string // IDs of the selected cells that pass
	// StillExpected counts selected cells that still fail as expected: when
	// zero the entry can be removed, otherwise narrowed.
	StillExpected int
}

// Removable reports whether the entry excuses nothing any more.
func (s StaleExpectation) Removable() bool { return s.StillExpected == 0 }

// DiffSide describes one of the two compared matrices.
type DiffSide struct {
	// Label names the matrix in reports ("baseline" and "current" unless the
	// caller sets it, e.g. to a file path).
	Label     string
	Scenario  string
	Generated time.Time
	Cells     int
}

// DiffReport is what changed between a baseline and a current matrix. Every
// cell of either matrix is in exactly one of Regressed, Expected, Fixed,
// Changed, New, Removed or the Unchanged count.
type DiffReport struct {
	Baseline, Current DiffSide
	ExpectationsFile  string

	// Regressed: passed in the baseline, does not pass now (fail, infra-error,
	// skipped or unknown: a cell that was not shown to pass is not a pass),
	// and no expectation accepts the current outcome.
	Regressed []Change
	// Expected: does not pass now, and an expectation accepts that outcome.
	Expected []Change
	// Fixed: did not pass in the baseline, passes now.
	Fixed []Change
	// Changed: some other change of outcome or root cause, e.g. fail -> infra-error.
	Changed []Change
	// New: only in the current matrix (and not expected). Not regressions:
	// there is no earlier pass they fall from.
	New []Change
	// Removed: only in the baseline.
	Removed   []Change
	Unchanged int

	// Stale: expectations whose selected cells now pass.
	Stale []StaleExpectation
	// Unused: expectations that select no cell of the current matrix.
	Unused []*Expectation
}

// Regressions is the number of cells that regressed; a gate fails when it is
// not zero.
func (d *DiffReport) Regressions() int { return len(d.Regressed) }

// Diff compares current against baseline. exp may be nil. Cells are matched
// by ID; each is judged against the first expectation, in file order, that
// selects it.
func Diff(baseline, current *Matrix, exp *Expectations) DiffReport {
	d := DiffReport{Baseline: side("baseline", baseline), Current: side("current", current)}
	if exp != nil {
		d.ExpectationsFile = exp.Path
	}
	base, baseIDs := index(baseline)
	cur, curIDs := index(current)

	type entryStats struct {
		passing  []string
		expected int
		selected int
	}
	stats := map[*Expectation]*entryStats{}
	if exp != nil {
		for _, e := range exp.Entries {
			stats[e] = &entryStats{}
		}
	}

	for _, id := range curIDs {
		r := cur[id]
		b, inBase := base[id]
		e := exp.For(r.Cell)
		c := Change{ID: id, Cell: r.Cell, After: r.Outcome, AfterCause: r.RootCause, Reason: r.Reason, Expectation: e}
		if inBase {
			c.Before, c.BeforeCause = b.Outcome, b.RootCause
		}
		if e != nil {
			st := stats[e]
			st.selected++
			switch {
			case r.Outcome == Pass:
				st.passing = append(st.passing, id)
			case e.Accepts(r):
				st.expected++
				d.Expected = append(d.Expected, c)
				continue
			default:
				c.Note = fmt.Sprintf("expectation %s expects %s, not %s", e.Where(exp.Path), e.Want(), outcomeCause(r.Outcome, r.RootCause))
			}
		}
		switch {
		case !inBase:
			d.New = append(d.New, c)
		case b.Outcome == Pass && r.Outcome != Pass:
			d.Regressed = append(d.Regressed, c)
		case b.Outcome != Pass && r.Outcome == Pass:
			d.Fixed = append(d.Fixed, c)
		case b.Outcome != r.Outcome || b.RootCause != r.RootCause:
			d.Changed = append(d.Changed, c)
		default:
			d.Unchanged++
		}
	}
	for _, id := range baseIDs {
		if _, ok := cur[id]; ok {
			continue
		}
		b := base[id]
		d.Removed = append(d.Removed, Change{ID: id, Cell: b.Cell, Before: b.Outcome, BeforeCause: b.RootCause, Reason: b.Reason})
	}
	if exp != nil {
		for _, e := range exp.Entries {
			st := stats[e]
			switch {
			case st.selected == 0:
				d.Unused = append(d.Unused, e)
			case len(st.passing) > 0:
				d.Stale = append(d.Stale, StaleExpectation{Expectation: e, Passing: st.passing, StillExpected: st.expected})
			}
		}
	}
	return d
}

func side(label string, m *Matrix) DiffSide {
	if m == nil {
		return DiffSide{Label: label}
	}
	return DiffSide{Label: label, Scenario: m.Scenario, Generated: m.Generated, Cells: len(m.Results)}
}

// index maps cell IDs to results, the first result of an ID winning, and
// returns the IDs sorted so reports are stable.
func index(m *Matrix) (map[string]Result, []string) {
	out := map[string]Result{}
	var ids []string
	if m == nil {
		return out, nil
	}
	for _, r := range m.Results {
		id := r.Cell.ID()
		if _, dup := out[id]; dup {
			continue
		}
		r.ID = id
		out[id] = r
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return out, ids
}

func outcomeCause(o Outcome, cause string) string {
	if o == "" {
		return "—"
	}
	if cause != "" && o != Pass {
		return fmt.Sprintf("%s (%s)", o, cause)
	}
	return string(o)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

// Summary is a one-line count of the report.
func (d *DiffReport) Summary() string {
	parts := []string{
		plural(len(d.Regressed), "regression", "regressions"),
		fmt.Sprintf("%d fixed", len(d.Fixed)),
		fmt.Sprintf("%d expected-fail", len(d.Expected)),
		fmt.Sprintf("%d changed", len(d.Changed)),
		fmt.Sprintf("%d new", len(d.New)),
		fmt.Sprintf("%d removed", len(d.Removed)),
		fmt.Sprintf("%d unchanged", d.Unchanged),
	}
	s := strings.Join(parts, ", ")
	if n := len(d.Stale) + len(d.Unused); n > 0 {
		s += "; " + plural(n, "expectation to review", "expectations to review")
	}
	return s
}

func (s DiffSide) describe() string {
	if s.Scenario == "" && s.Generated.IsZero() {
		return fmt.Sprintf("%s (%d cells)", s.Label, s.Cells)
	}
	return fmt.Sprintf("%s (scenario %s, %d cells, generated %s)", s.Label, s.Scenario, s.Cells, s.Generated.Format(time.RFC3339))
}

// staleText and unusedText describe an expectation to review; code formats
// identifiers (plain for text, a code span for Markdown).
func (d *DiffReport) staleText(s StaleExpectation, code func(string) string) string {
	e := s.Expectation
	passing := make([]string, len(s.Passing))
	for i, id := range s.Passing {
		passing[i] = code(id)
	}
	if s.Removable() {
		return fmt.Sprintf("%s (%s): every cell it selects now passes (%s): the expectation can be removed",
			code(e.Where(d.ExpectationsFile)), code(e.Selector()), strings.Join(passing, ", "))
	}
	return fmt.Sprintf("%s (%s): %s (%s) while %s as expected: narrow the expectation",
		code(e.Where(d.ExpectationsFile)), code(e.Selector()), plural(len(s.Passing), "selected cell now passes", "selected cells now pass"),
		strings.Join(passing, ", "), plural(s.StillExpected, "still fails", "still fail"))
}

func (d *DiffReport) unusedText(e *Expectation, code func(string) string) string {
	return fmt.Sprintf("%s (%s): selects no cell of the current matrix", code(e.Where(d.ExpectationsFile)), code(e.Selector()))
}

func plain(s string) string    { return s }
func codeSpan(s string) string { return "`" + strings.ReplaceAll(s, "`", "'") + "`" }

// Text writes the report for a terminal or a CI log.
func (d *DiffReport) Text(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "baseline: %s\ncurrent:  %s\n", d.Baseline.describe(), d.Current.describe())
	if d.ExpectationsFile != "" {
		fmt.Fprintf(&b, "expectations: %s\n", d.ExpectationsFile)
	}
	fmt.Fprintf(&b, "%s\n", d.Summary())
	section := func(title string, cs []Change, line func(Change) string) {
		if len(cs) == 0 {
			return
		}
		fmt.Fprintf(&b, "\n%s:\n", title)
		for _, c := range cs {
			fmt.Fprintf(&b, "  %s\n", line(c))
		}
	}
	transition := func(c Change) string {
		s := fmt.Sprintf("%s: %s -> %s", c.ID, outcomeCause(c.Before, c.BeforeCause), outcomeCause(c.After, c.AfterCause))
		if c.Reason != "" && c.After != Pass {
			s += ": " + oneLine(c.Reason, 0)
		}
		if c.Note != "" {
			s += " [" + c.Note + "]"
		}
		return s
	}
	section("REGRESSIONS (passed in the baseline, not now)", d.Regressed, transition)
	section("EXPECTED FAILURES (known, not regressions)", d.Expected, func(c Change) string {
		e := c.Expectation
		s := fmt.Sprintf("%s: %s: %s", c.ID, outcomeCause(c.After, c.AfterCause), e.Reason)
		if e.Link != "" {
			s += " " + e.Link
		}
		return s + " (" + e.Where(d.ExpectationsFile) + ")"
	})
	section("FIXED", d.Fixed, transition)
	section("CHANGED", d.Changed, transition)
	section("NEW CELLS", d.New, func(c Change) string {
		s := fmt.Sprintf("%s: %s", c.ID, outcomeCause(c.After, c.AfterCause))
		if c.Reason != "" && c.After != Pass {
			s += ": " + oneLine(c.Reason, 0)
		}
		if c.Note != "" {
			s += " [" + c.Note + "]"
		}
		return s
	})
	section("REMOVED CELLS", d.Removed, func(c Change) string {
		return fmt.Sprintf("%s: was %s", c.ID, outcomeCause(c.Before, c.BeforeCause))
	})
	if len(d.Stale)+len(d.Unused) > 0 {
		b.WriteString("\nEXPECTATIONS TO REVIEW:\n")
		for _, s := range d.Stale {
			fmt.Fprintf(&b, "  %s\n", d.staleText(s, plain))
		}
		for _, e := range d.Unused {
			fmt.Fprintf(&b, "  %s\n", d.unusedText(e, plain))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Markdown writes the report for a pull request comment or a CI job summary.
func (d *DiffReport) Markdown(w io.Writer) error {
	var b strings.Builder
	if n := d.Regressions(); n > 0 {
		fmt.Fprintf(&b, "## cnimatrix diff: ❌ %s\n\n", plural(n, "regression", "regressions"))
	} else {
		b.WriteString("## cnimatrix diff: ✅ no regressions\n\n")
	}
	fmt.Fprintf(&b, "Baseline: %s  \nCurrent: %s", mdEscape(d.Baseline.describe()), mdEscape(d.Current.describe()))
	if d.ExpectationsFile != "" {
		fmt.Fprintf(&b, "  \nExpectations: `%s`", d.ExpectationsFile)
	}
	fmt.Fprintf(&b, "\n\n%s.\n", d.Summary())

	table := func(title string, cs []Change) {
		if len(cs) == 0 {
			return
		}
		fmt.Fprintf(&b, "\n### %s\n\n| Cell | Baseline | Current | Reason |\n|---|---|---|---|\n", title)
		for _, c := range cs {
			reason := c.Reason
			if c.After == Pass {
				reason = ""
			}
			if c.Note != "" {
				reason = strings.TrimSpace(reason + " _(" + c.Note + ")_")
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", c.ID, mdEscape(outcomeCause(c.Before, c.BeforeCause)), mdEscape(outcomeCause(c.After, c.AfterCause)), mdEscape(oneLine(reason, 300)))
		}
	}
	table("Regressions", d.Regressed)
	if len(d.Expected) > 0 {
		b.WriteString("\n### Expected failures (known, not regressions)\n\n| Cell | Outcome | Why | Link | Expectation |\n|---|---|---|---|---|\n")
		for _, c := range d.Expected {
			e := c.Expectation
			link := "—"
			if e.Link != "" {
				link = fmt.Sprintf("[%s](%s)", mdEscape(shortLink(e.Link)), e.Link)
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s | `%s` |\n", c.ID, mdEscape(outcomeCause(c.After, c.AfterCause)), mdEscape(oneLine(e.Reason, 300)), link, e.Where(d.ExpectationsFile))
		}
	}
	table("Fixed", d.Fixed)
	table("Changed", d.Changed)
	table("New cells", d.New)
	table("Removed cells", d.Removed)
	if len(d.Stale)+len(d.Unused) > 0 {
		b.WriteString("\n### Expectations to review\n\n")
		for _, s := range d.Stale {
			fmt.Fprintf(&b, "- %s\n", d.staleText(s, codeSpan))
		}
		for _, e := range d.Unused {
			fmt.Fprintf(&b, "- %s\n", d.unusedText(e, codeSpan))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// oneLine folds whitespace so a reason fits a log line or a table cell, and
// cuts it at max runes (0: no limit).
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); max > 0 && len(r) > max {
		s = string(r[:max]) + "…"
	}
	return s
}

var mdReplacer = strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;")

func mdEscape(s string) string { return mdReplacer.Replace(s) }

// shortLink turns https://github.com/o/r/issues/5963 into o/r#5963.
func shortLink(link string) string {
	s := strings.TrimPrefix(strings.TrimPrefix(link, "https://"), "http://")
	if rest, ok := strings.CutPrefix(s, "github.com/"); ok {
		p := strings.Split(strings.TrimSuffix(rest, "/"), "/")
		if len(p) == 4 && (p[2] == "issues" || p[2] == "pull") {
			return p[0] + "/" + p[1] + "#" + p[3]
		}
	}
	return s
}
