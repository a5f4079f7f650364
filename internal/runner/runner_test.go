package runner

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

func writeScenario(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func root(t *testing.T) string {
	t.Helper()
	r, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

const flannel = "cni:\n  name: flannel\n  versions: [v0.28.10]\narch: [amd64]\n"

// Both shells load through Load: two scenarios with a cell of one ID are
// refused, naming both, unless one has a variant.
func TestLoadRefusesDuplicateCells(t *testing.T) {
	dir := t.TempDir()
	a := writeScenario(t, dir, "a", "name: a\n"+flannel)
	b := writeScenario(t, dir, "b", "name: b\n"+flannel)
	_, err := Load([]string{a, b}, LoadOptions{RepoRoot: root(t)})
	var bad *BadInputError
	if !errors.As(err, &bad) || !strings.Contains(err.Error(), "is in scenarios a and b: give one a variant") {
		t.Fatalf("duplicate cells: %v", err)
	}
	c := writeScenario(t, dir, "c", "name: c\nvariant: other\n"+flannel)
	s, err := Load([]string{a, c}, LoadOptions{RepoRoot: root(t)})
	if err != nil || len(s.Cells) != 2 || s.Name() != "a+c" {
		t.Fatalf("with a variant: %v %+v", err, s)
	}
	if _, err := Load([]string{a}, LoadOptions{RepoRoot: root(t), Filters: []string{"arch"}}); !errors.As(err, &bad) {
		t.Fatalf("bad filter: %v", err)
	}
}

// A failed Prepare is every cell's infra-error with an images phase, and
// the expectations are compared on what was recorded.
func TestPrepareFailedIsInfraError(t *testing.T) {
	dir := t.TempDir()
	s, err := Load([]string{writeScenario(t, dir, "a", "name: a\n"+flannel)}, LoadOptions{RepoRoot: root(t)})
	if err != nil {
		t.Fatal(err)
	}
	m := s.Matrix(matrix.Host{})
	s.Run(context.Background(), nil, m, Parallelism{N: 2}, errors.New("node image: build failed"))
	r, ok := m.Get(s.Cells[0].ID())
	if !ok || r.Outcome != matrix.InfraError || r.RootCause != "infrastructure" || len(r.Phases) != 1 || r.Phases[0].Name != "images" || !r.Phases[0].Infra {
		t.Fatalf("result %+v", r)
	}
	bad := s.Unexpected(m)
	if len(bad) != 1 || !strings.Contains(bad[0].Error(), "outcome infra-error, want pass") {
		t.Fatalf("unexpected: %v", bad)
	}
}
