package report

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"

	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     float64      `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       float64         `xml:"time,attr"`
	Properties []junitProperty `xml:"properties>property,omitempty"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	ClassName string        `xml:"classname,attr"`
	Time      float64       `xml:"time,attr"`
	Failure   *junitMessage `xml:"failure,omitempty"`
	Error     *junitMessage `xml:"error,omitempty"`
	Skipped   *junitMessage `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Body    string `xml:",chardata"`
}

// JUnit writes one testsuite per cell and one testcase per phase, so that an
// infrastructure failure (an <error>, e.g. cluster creation) shows apart from
// a CNI failure (a <failure>). A cell without phases gets a single "result"
// testcase: an <error> when its outcome is unknown, never a silent pass.
func JUnit(w io.Writer, m *matrix.Matrix) error {
	doc := junitSuites{Name: "cnimatrix " + m.Scenario}
	for _, r := range m.Results {
		s := junitSuite{Name: r.ID, Time: r.DurationMS / 1000}
		s.Properties = []junitProperty{
			{"cni", r.CNI}, {"cniVersion", r.CNIVersion}, {"kubernetes", r.Kubernetes},
			{"arch", r.Arch}, {"provider", r.Provider}, {"outcome", string(r.Outcome)},
			{"fidelity", r.Fidelity}, {"images", r.Images}, {"manifestPin", r.ManifestPin}, {"rootCause", r.RootCause},
		}
		for _, p := range r.Phases {
			c := junitCase{Name: p.Name, ClassName: r.ID, Time: p.DurationMS / 1000}
			body := evidenceText(p)
			switch p.Outcome {
			case matrix.Fail:
				c.Failure = &junitMessage{Message: firstLine(p.Error, 500), Type: "fail", Body: body}
			case matrix.InfraError:
				c.Error = &junitMessage{Message: firstLine(p.Error, 500), Type: "infra-error", Body: body}
			case matrix.Skipped:
				c.Skipped = &junitMessage{Message: p.Error}
			case matrix.Unknown:
				c.Error = &junitMessage{Message: "no result: " + p.Error, Type: "unknown", Body: body}
			default:
				c.SystemOut = body
			}
			s.Cases = append(s.Cases, c)
		}
		if len(r.Phases) == 0 {
			c := junitCase{Name: "result", ClassName: r.ID}
			switch r.Outcome {
			case matrix.Skipped:
				c.Skipped = &junitMessage{Message: r.Reason}
			case matrix.Pass:
				// A pass without phases cannot be shown as evidence; report it as unknown.
				c.Error = &junitMessage{Message: "pass recorded without any phase", Type: "unknown"}
			default:
				c.Error = &junitMessage{Message: fmt.Sprintf("%s: %s", r.Outcome, r.Reason), Type: string(r.Outcome)}
			}
			s.Cases = append(s.Cases, c)
		}
		for _, c := range s.Cases {
			s.Tests++
			switch {
			case c.Failure != nil:
				s.Failures++
			case c.Error != nil:
				s.Errors++
			case c.Skipped != nil:
				s.Skipped++
			}
		}
		doc.Tests += s.Tests
		doc.Failures += s.Failures
		doc.Errors += s.Errors
		doc.Skipped += s.Skipped
		doc.Time += s.Time
		doc.Suites = append(doc.Suites, s)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("encode junit: %w", err)
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func evidenceText(p matrix.Phase) string {
	var b strings.Builder
	if p.Error != "" {
		b.WriteString(p.Error + "\n")
	}
	for _, e := range p.Evidence {
		status := "ok"
		if !e.OK {
			status = "FAILED"
		}
		fmt.Fprintf(&b, "[%s] %s %s -> %s (%.0f ms, %d attempts): %s\n", status, e.Check, e.Source, e.Target, e.LatencyMS, e.Attempts, e.Detail)
	}
	return b.String()
}
