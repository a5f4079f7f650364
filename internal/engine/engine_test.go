package engine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/cnimatrix/cnimatrix/internal/logx"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

func ph(name string, o matrix.Outcome) matrix.Phase {
	p := matrix.Phase{Name: name, Step: name, Outcome: o}
	if strings.HasPrefix(name, "check:") {
		p.Step = StepChecks
	}
	return p
}

func TestVerdictPassOnlyWhenEveryCheckRanAndPassed(t *testing.T) {
	cases := []struct {
		phases []matrix.Phase
		want   matrix.Outcome
	}{
		{nil, matrix.Unknown},
		{[]matrix.Phase{ph("cluster", matrix.Pass), ph("cni-ready", matrix.Pass)}, matrix.Unknown}, // checks never ran
		{[]matrix.Phase{ph("cluster", matrix.Pass), ph("check:nodes-ready", matrix.Pass), ph("teardown", matrix.Pass)}, matrix.Pass},
		{[]matrix.Phase{ph("cluster", matrix.InfraError)}, matrix.InfraError},
		{[]matrix.Phase{ph("cluster", matrix.Pass), ph("check:a", matrix.Pass), ph("check:b", matrix.Fail)}, matrix.Fail},
		{[]matrix.Phase{ph("cluster", matrix.Pass), ph("check:a", matrix.Pass), ph("teardown", matrix.InfraError)}, matrix.Pass},
		{[]matrix.Phase{ph("cluster", matrix.Pass), ph("check:a", matrix.Unknown)}, matrix.Unknown},
		// A check that could not run: skipped, and the cell is not a pass.
		{[]matrix.Phase{ph("cluster", matrix.Pass), ph("check:a", matrix.Pass), ph("check:b", matrix.Skipped)}, matrix.Unknown},
		{[]matrix.Phase{ph("cluster", matrix.Pass), ph("check:a", matrix.Fail), ph("check:b", matrix.Skipped)}, matrix.Fail},
	}
	for i, c := range cases {
		ran := false
		for _, p := range c.phases {
			ran = ran || p.Step == StepChecks
		}
		if got, _ := verdict(matrix.Result{Phases: c.phases}, ran); got != c.want {
			t.Errorf("case %d: %s, want %s", i, got, c.want)
		}
	}
}

func TestCheckExpectation(t *testing.T) {
	r := matrix.Result{Outcome: matrix.Fail, RootCause: "image-pull", Phases: []matrix.Phase{{Name: "cni-ready", Outcome: matrix.Fail, Error: `Back-off pulling image "x:nope"`}}}
	if err := CheckExpectation(scenario.Expectation{Outcome: matrix.Fail, RootCause: "image-pull", Evidence: []string{"x:nope", "Back-off"}}, r); err != nil {
		t.Error(err)
	}
	if err := CheckExpectation(scenario.Expectation{Outcome: matrix.Pass}, r); err == nil {
		t.Error("a failed cell met a pass expectation")
	}
	err := CheckExpectation(scenario.Expectation{Outcome: matrix.Fail, Evidence: []string{"x:nope", "other"}}, r)
	if err == nil || !strings.Contains(err.Error(), `mentions "other"`) || strings.Contains(err.Error(), `"x:nope"`) {
		t.Errorf("missing evidence not reported as such: %v", err)
	}
}

func TestFilterCells(t *testing.T) {
	cells := []matrix.Cell{
		{CNI: "calico", CNIVersion: "v3.32.1", Kubernetes: "v1.37.2", Arch: "amd64", Provider: "kind"},
		{CNI: "calico", CNIVersion: "v3.31.7", Kubernetes: "v1.37.2", Arch: "arm64", Provider: "qemu"},
	}
	got, err := FilterCells(cells, []string{"calico=v3.32.1"})
	if err != nil || len(got) != 1 || got[0].CNIVersion != "v3.32.1" {
		t.Fatalf("calico=v3.32.1: %v %v", got, err)
	}
	if got, _ := FilterCells(cells, []string{"flannel=v3.32.1"}); len(got) != 0 {
		t.Fatalf("another CNI's name matched: %v", got)
	}
	if _, err := FilterCells(cells, []string{"arch"}); err == nil {
		t.Fatal("malformed filter accepted")
	}
}

func TestOverrideImages(t *testing.T) {
	ds := &unstructured.Unstructured{Object: map[string]any{
		"kind": "DaemonSet",
		"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
			"initContainers": []any{map[string]any{"name": "i", "image": "a:1"}},
			"containers":     []any{map[string]any{"name": "c", "image": "a:1"}, map[string]any{"name": "d", "image": "b:1"}},
		}}},
	}}
	if n := OverrideImages([]*unstructured.Unstructured{ds}, map[string]string{"a:1": "a:2"}); n != 2 {
		t.Fatalf("replaced %d, want 2", n)
	}
	cs, _, _ := unstructured.NestedSlice(ds.Object, "spec", "template", "spec", "containers")
	if cs[0].(map[string]any)["image"] != "a:2" || cs[1].(map[string]any)["image"] != "b:1" {
		t.Fatalf("containers after override: %v", cs)
	}
}

// An earlier run's artifacts of a cell are moved aside, not deleted.
func TestKeepEarlierArtifacts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cell")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pods.yaml"), []byte("evidence"), 0o644); err != nil {
		t.Fatal(err)
	}
	keepEarlierArtifacts(logx.Discard(), dir)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the earlier folder is still where this run writes: %v", err)
	}
	kept, _ := filepath.Glob(dir + ".*/pods.yaml")
	if len(kept) != 1 {
		t.Fatalf("earlier artifacts not kept aside: %v", kept)
	}
	keepEarlierArtifacts(logx.Discard(), dir) // nothing there: nothing to do
}
