package engine

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cnimatrix/cnimatrix/internal/catalog"
	"github.com/cnimatrix/cnimatrix/internal/diagnose"
	"github.com/cnimatrix/cnimatrix/internal/images"
	"github.com/cnimatrix/cnimatrix/internal/logx"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

// loadSeedCalico loads scenarios/seed-2019-calico.yaml with an empty
// manifest cache, as on a machine that never had the internet.
func loadSeedCalico(t *testing.T) *scenario.Scenario {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.Load()
	if err != nil {
		t.Fatal(err)
	}
	scenario.ManifestCacheDir = t.TempDir()
	t.Cleanup(func() { scenario.ManifestCacheDir = "" })
	s, err := scenario.Load(filepath.Join(root, "scenarios", "seed-2019-calico.yaml"), cat, root)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func phaseNamed(r matrix.Result, name string) *matrix.Phase {
	for i := range r.Phases {
		if r.Phases[i].Name == name {
			return &r.Phases[i]
		}
	}
	return nil
}

// Every cell of the seed-era Calico scenario is skipped with its reason,
// creates nothing and meets the scenario's expectation; the audit of its
// images, with their registries unreachable, is evidence that says so and
// not a pass. No Docker: a skipped cell never reaches the cluster.
func TestRunCellSkipsSeedCalicoOffline(t *testing.T) {
	s := loadSeedCalico(t)
	skipAuditMirrors = map[string]string{"*": "http://127.0.0.1:1"} // nothing listens: unreachable
	t.Cleanup(func() { skipAuditMirrors = nil })
	e := &Engine{log: logx.New(testWriter{t}, testing.Verbose())}
	cells := s.Cells()
	if len(cells) != 6 {
		t.Fatalf("%d cells", len(cells))
	}
	for _, c := range cells {
		r := e.RunCell(context.Background(), s, c)
		if r.Outcome != matrix.Skipped || !strings.HasPrefix(r.Reason, "calico "+c.CNIVersion+" cannot run on Kubernetes v1.37.2: its manifest uses ") {
			t.Errorf("%s: %s %q", c, r.Outcome, r.Reason)
		}
		if err := CheckExpectation(s.ExpectFor(c), r); err != nil {
			t.Error(err)
		}
		if r.ClusterName != "" || r.RootCause != "" || r.Fidelity != "" {
			t.Errorf("%s: cluster %q, root cause %q, fidelity %q", c, r.ClusterName, r.RootCause, r.Fidelity)
		}
		var names []string
		for _, p := range r.Phases {
			names = append(names, p.Name+"="+string(p.Outcome))
		}
		if got := strings.Join(names, " "); got != "kubernetes-api=skipped preflight=unknown cluster=skipped" {
			t.Errorf("%s: phases %s", c, got)
		}
		api := phaseNamed(r, KubernetesAPIPhase)
		if api == nil || len(api.Evidence) == 0 || api.Evidence[0].OK {
			t.Errorf("%s: kubernetes-api phase %+v", c, api)
		}
		pf := phaseNamed(r, diagnose.PreflightPhase)
		if pf == nil || !strings.Contains(pf.Error, "images not audited for linux/"+c.Arch) || len(pf.Evidence) != 5 {
			t.Fatalf("%s: preflight %+v", c, pf)
		}
		for _, ev := range pf.Evidence {
			if ev.OK {
				t.Errorf("%s: unreachable registry recorded as ok: %+v", c, ev)
			}
		}
	}
	// --preflight off: no audit, still skipped.
	e.opts.Preflight = PreflightOff
	r := e.RunCell(context.Background(), s, cells[0])
	if r.Outcome != matrix.Skipped || phaseNamed(r, diagnose.PreflightPhase) != nil {
		t.Errorf("preflight off: %s %+v", r.Outcome, r.Phases)
	}
}

// With the images reachable the audit is real evidence: an amd64-only
// image fails it on arm64 (arch-mismatch) and passes on amd64, and the cell
// stays skipped either way.
func TestSkippedCellAuditsCatalogImages(t *testing.T) {
	ctx := context.Background()
	reg, err := images.StartRegistry(ctx, "127.0.0.1:0", logx.Discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	// An x86-64 ELF header is all the audit reads of an entrypoint.
	elfHeader := make([]byte, 64)
	copy(elfHeader, "\x7fELF\x02\x01\x01")
	elfHeader[16], elfHeader[18] = 2, 62 // ET_EXEC, EM_X86_64
	l, err := images.LayerFromFiles(images.LayerFiles{"usr/bin/app": {Mode: 0o755, Content: elfHeader}})
	if err != nil {
		t.Fatal(err)
	}
	img, err := images.NewImage("amd64", []v1.Layer{l}, v1.Config{Entrypoint: []string{"/usr/bin/app"}})
	if err != nil {
		t.Fatal(err)
	}
	idx, err := images.NewIndex(img)
	if err != nil {
		t.Fatal(err)
	}
	imgs := []string{"quay.io/calico/node:v3.1.7", "quay.io/calico/cni:v3.1.7"}
	for _, ref := range imgs {
		if err := reg.Push(ctx, ref, idx); err != nil {
			t.Fatal(err)
		}
	}
	s := loadSeedCalico(t)
	skipAuditMirrors = map[string]string{"*": "http://" + reg.Addr()}
	t.Cleanup(func() { skipAuditMirrors = nil })
	e := &Engine{log: logx.Discard()}
	for _, arch := range []string{"arm64", "amd64"} {
		var cell matrix.Cell
		for _, c := range s.Cells() {
			if c.CNIVersion == "v3.1.7" && c.Arch == arch {
				cell = c
			}
		}
		sk := *s.SkipFor(cell)
		sk.Images = imgs
		run := &cellRun{log: e.log, plan: &CellPlan{Cell: cell}, result: &matrix.Result{Cell: cell}}
		e.skipCell(ctx, run, &sk)
		r := *run.result
		if r.Outcome != matrix.Skipped || r.Reason != sk.Reason {
			t.Errorf("%s: %s %q", arch, r.Outcome, r.Reason)
		}
		pf := phaseNamed(r, diagnose.PreflightPhase)
		switch arch {
		case "arm64":
			if pf == nil || pf.Outcome != matrix.Fail || !strings.HasPrefix(pf.Error, "arch-mismatch: 2 of 2 images cannot run on linux/arm64: quay.io/calico/node:v3.1.7") {
				t.Errorf("arm64 audit: %+v", pf)
			}
		case "amd64":
			if pf == nil || pf.Outcome != matrix.Pass || !pf.Evidence[0].OK || len(pf.Evidence) != 3 {
				t.Errorf("amd64 audit: %+v", pf)
			}
		}
	}
}
