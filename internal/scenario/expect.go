package scenario

import (
	"fmt"
	"slices"
	"strings"

	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

// Expectation is what a cell's result should be.
type Expectation struct {
	Outcome matrix.Outcome
	// RootCause, when set, must equal the cell's root cause.
	RootCause string
	// Evidence, when set: each string must appear in the errors or failed
	// observations of the cell's phases.
	Evidence []string
}

// CellExpect is an expectation for the cells whose fields equal Match.
type CellExpect struct {
	// Match maps a cell field (version, arch, k8s, provider, variant) to
	// the value it must have.
	Match map[string]string
	Expectation
}

// matchKeys are the cell fields an expect.cells rule can match.
var matchKeys = []string{"version", "arch", "k8s", "provider", "variant"}

func cellField(c matrix.Cell, key string) string {
	switch key {
	case "version":
		return c.CNIVersion
	case "arch":
		return c.Arch
	case "k8s":
		return c.Kubernetes
	case "provider":
		return c.Provider
	case "variant":
		return c.Variant
	}
	return "\x00"
}

// ExpectFor is what the scenario expects of cell c: the first expect.cells
// rule that matches it, else expect itself.
func (s *Scenario) ExpectFor(c matrix.Cell) Expectation {
	for _, ce := range s.CellExpects {
		ok := true
		for k, v := range ce.Match {
			if cellField(c, k) != v {
				ok = false
				break
			}
		}
		if ok {
			return ce.Expectation
		}
	}
	return s.Expect
}

// expect parses expect and its per-cell rules.
func (v *validator) expect(raw *rawScenario, s *Scenario) {
	s.Expect = v.expectation("expect", raw.Expect.rawExpect, Expectation{Outcome: matrix.Pass})
	for i, rc := range raw.Expect.Cells {
		where := fmt.Sprintf("expect.cells[%d]", i)
		ce := CellExpect{Match: map[string]string{}, Expectation: v.expectation(where, rc.rawExpect, s.Expect)}
		if len(rc.Match) == 0 {
			v.add(rc.Outcome.Line, "%s: match is required (keys: %s)", where, strings.Join(matchKeys, ", "))
		}
		for k, val := range rc.Match {
			ce.Match[k] = val.V
			var known []string
			switch k {
			case "version":
				known = s.CNI.Versions
			case "arch":
				known = s.Arch
			case "k8s":
				known = s.Kubernetes
			case "provider", "variant":
			default:
				v.add(val.Line, "%s.match: unknown key %q (known: %s)", where, k, strings.Join(matchKeys, ", "))
				continue
			}
			if known != nil && !slices.Contains(known, val.V) {
				v.add(val.Line, "%s.match: %s %q is not one of the scenario's (%s): the rule would match no cell", where, k, val.V, strings.Join(known, ", "))
			}
		}
		s.CellExpects = append(s.CellExpects, ce)
	}
}

func (v *validator) expectation(where string, r rawExpect, def Expectation) Expectation {
	e := Expectation{Outcome: def.Outcome, RootCause: r.RootCause.V}
	if r.Outcome.V != "" {
		e.Outcome = matrix.Outcome(r.Outcome.V)
		if !e.Outcome.Valid() {
			v.add(r.Outcome.Line, "%s.outcome %q: want pass, fail, infra-error, skipped or unknown", where, r.Outcome.V)
		}
	}
	for _, ev := range r.Evidence {
		if strings.TrimSpace(ev.V) == "" {
			v.add(ev.Line, "%s.evidence: empty string", where)
			continue
		}
		e.Evidence = append(e.Evidence, ev.V)
	}
	return e
}
