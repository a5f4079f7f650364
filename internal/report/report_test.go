package report

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"

	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

func sample() *matrix.Matrix {
	ok := matrix.Cell{CNI: "flannel", CNIVersion: "v0.28.10", Kubernetes: "v1.37.2", Arch: "amd64", Provider: "kind"}
	bad, infra, none := ok, ok, ok
	bad.Variant, infra.Variant, none.Variant = "bad", "infra", "none"
	m := matrix.New("t", []matrix.Cell{ok, bad, infra, none})
	m.Record(matrix.Result{Cell: ok, Outcome: matrix.Pass, Phases: []matrix.Phase{{Name: "cluster", Outcome: matrix.Pass}, {Name: "check:pod-to-pod", Outcome: matrix.Pass}}})
	m.Record(matrix.Result{Cell: bad, Outcome: matrix.Fail, RootCause: "image-pull", Phases: []matrix.Phase{
		{Name: "cluster", Outcome: matrix.Pass},
		{Name: "cni-ready", Outcome: matrix.Fail, Error: "ErrImagePull x", Evidence: []matrix.Evidence{{Source: "node-a", Target: "img", Detail: "not found"}}}}})
	m.Record(matrix.Result{Cell: infra, Outcome: matrix.InfraError, Phases: []matrix.Phase{{Name: "cluster", Outcome: matrix.InfraError, Error: "docker", Infra: true}}})
	return m
}

func TestJUnitSeparatesInfraFromCNIFailures(t *testing.T) {
	var b bytes.Buffer
	if err := JUnit(&b, sample()); err != nil {
		t.Fatal(err)
	}
	var doc junitSuites
	if err := xml.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatalf("junit does not parse: %v\n%s", err, b.String())
	}
	if len(doc.Suites) != 4 {
		t.Fatalf("want 4 suites, got %d", len(doc.Suites))
	}
	// 1 failure (cni-ready), errors: cluster infra + unknown cell without phases.
	if doc.Failures != 1 || doc.Errors != 2 {
		t.Fatalf("failures=%d errors=%d, want 1 and 2:\n%s", doc.Failures, doc.Errors, b.String())
	}
	if !strings.Contains(b.String(), `type="infra-error"`) || !strings.Contains(b.String(), `type="unknown"`) {
		t.Errorf("junit lacks infra-error or unknown types:\n%s", b.String())
	}
}

func TestMarkdownShowsEveryCellAndEvidence(t *testing.T) {
	var b bytes.Buffer
	if err := Markdown(&b, sample()); err != nil {
		t.Fatal(err)
	}
	s := b.String()
	for _, want := range []string{"✅ pass", "❌ fail", "image-pull", "⚠️ infra-error", "❔ unknown", "not found", "4 cells"} {
		if !strings.Contains(s, want) {
			t.Errorf("markdown lacks %q:\n%s", want, s)
		}
	}
}
