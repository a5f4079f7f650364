package engine

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/cnimatrix/cnimatrix/internal/archaudit"
	"github.com/cnimatrix/cnimatrix/internal/calico"
	"github.com/cnimatrix/cnimatrix/internal/calicodata"
	"github.com/cnimatrix/cnimatrix/internal/catalog"
	"github.com/cnimatrix/cnimatrix/internal/diagnose"
	"github.com/cnimatrix/cnimatrix/internal/images"
	"github.com/cnimatrix/cnimatrix/internal/logx"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

func TestParsePreflight(t *testing.T) {
	for in, want := range map[string]Preflight{"": PreflightWarn, "warn": PreflightWarn, "strict": PreflightStrict, " off ": PreflightOff} {
		if got, err := ParsePreflight(in); err != nil || got != want {
			t.Errorf("ParsePreflight(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"on", "Strict", "warn,strict"} {
		if _, err := ParsePreflight(in); err == nil || !strings.Contains(err.Error(), "want warn, strict or off") {
			t.Errorf("ParsePreflight(%q): %v", in, err)
		}
	}
}

// seedRun is the part of a run the preflight uses: the seed scenario, the
// image cache and a real registry with the fixtures pushed the way the
// engine pushes them, plus a stand-in for the flannel image (built for real
// it needs Debian packages; the audit only reads its entrypoint).
type seedRun struct {
	s   *scenario.Scenario
	e   *Engine
	reg *images.Registry
}

func newSeedRun(t *testing.T) *seedRun {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the seed fixtures and serves them from a registry")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.Load()
	if err != nil {
		t.Fatal(err)
	}
	s, err := scenario.Load(filepath.Join(root, "scenarios", "seed-2019.yaml"), cat, root)
	if err != nil {
		t.Fatal(err)
	}
	log := logx.New(testWriter{t}, testing.Verbose())
	cache, err := images.NewCache(t.TempDir(), log)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := images.StartRegistry(context.Background(), "127.0.0.1:0", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	e := &Engine{log: log, cache: cache, registry: reg, pushed: map[string]bool{}}
	if err := e.pushFixtures(ctx, s); err != nil {
		t.Fatal(err)
	}
	stand, err := flannelStandIn(ctx, cache)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Push(ctx, images.FlannelImageRef, stand); err != nil {
		t.Fatal(err)
	}
	return &seedRun{s: s, e: e, reg: reg}
}

// flannelStandIn is an index whose entrypoint script runs a /bin/sh of each
// entry's own machine, as the real flannel image does.
func flannelStandIn(ctx context.Context, cache *images.Cache) (v1.ImageIndex, error) {
	var imgs []v1.Image
	for _, arch := range ImageArches {
		dir, err := cache.Flexvol(ctx, arch)
		if err != nil {
			return nil, err
		}
		sh, err := os.ReadFile(filepath.Join(dir, "flexvol"))
		if err != nil {
			return nil, err
		}
		l, err := images.LayerFromFiles(images.LayerFiles{
			"opt/bin/entrypoint.sh": {Mode: 0o755, Content: []byte("#!/bin/sh\nexec /opt/bin/flanneld \"$@\"\n")},
			"bin/sh":                {Mode: 0o755, Content: sh},
		})
		if err != nil {
			return nil, err
		}
		img, err := images.NewImage(arch, []v1.Layer{l}, v1.Config{Entrypoint: []string{"/opt/bin/entrypoint.sh"}})
		if err != nil {
			return nil, err
		}
		imgs = append(imgs, img)
	}
	return images.NewIndex(imgs...)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (r *seedRun) cell(version, arch string) matrix.Cell {
	for _, c := range r.s.Cells() {
		if c.CNIVersion == version && c.Arch == arch {
			return c
		}
	}
	panic("no cell " + version + "/" + arch)
}

// The fixtures the engine pushes are exactly those the manifests name, and
// nodes find them under the registry's mirror layout.
func TestPushFixtures(t *testing.T) {
	r := newSeedRun(t)
	for _, ref := range images.FixtureRefs() {
		if !r.e.pushed[ref] {
			t.Errorf("%s not pushed", ref)
		}
		up, err := name.ParseReference(r.reg.Addr()+"/docker.io/"+strings.TrimPrefix(ref, "docker.io/"), name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := remote.Head(up); err != nil {
			t.Errorf("%s: %v", up, err)
		}
	}
	if len(r.e.pushed) != len(images.FixtureRefs()) {
		t.Errorf("pushed %v, want only the fixtures", r.e.pushed)
	}
	// A scenario naming no fixture builds and pushes nothing.
	e := &Engine{log: r.e.log, cache: r.e.cache, registry: r.reg, pushed: map[string]bool{}}
	plain := &scenario.Scenario{CNI: scenario.CNISpec{Manifests: map[string]string{"v": "../../fixtures/cni/flannel/kube-flannel.yaml"}}}
	if err := e.pushFixtures(context.Background(), plain); err != nil || len(e.pushed) != 0 {
		t.Errorf("plain flannel: pushed %v, %v", e.pushed, err)
	}
}

// The preflight of every seed cell, in both modes, against the fixtures in
// a real registry: what it finds, what it says, what it fails, how fast.
func TestPreflightSeedCells(t *testing.T) {
	r := newSeedRun(t)
	addr := r.reg.Addr()
	type want struct {
		ok     bool
		detail []string // in the flexvol finding
	}
	cases := []struct {
		version, arch string
		want
	}{
		{"good", "amd64", want{true, []string{"ok: DaemonSet kube-flannel/kube-flannel-ds init container flexvol-driver: index entry linux/amd64: entrypoint /usr/local/bin/flexvol is x86-64"}}},
		{"good", "arm64", want{true, []string{"ok: DaemonSet kube-flannel/kube-flannel-ds init container flexvol-driver: index entry linux/arm64/v8: entrypoint /usr/local/bin/flexvol is aarch64"}}},
		{"amd64-only", "amd64", want{true, nil}},
		{"amd64-only", "arm64", want{false, []string{"no-variant: DaemonSet kube-flannel/kube-flannel-ds init container flexvol-driver: index has no linux/arm64 entry (platforms: linux/amd64); its linux/amd64 entrypoint /usr/local/bin/flexvol is x86-64"}}},
		{"mislabeled", "amd64", want{true, nil}},
		{"mislabeled", "arm64", want{false, []string{"mislabeled: DaemonSet kube-flannel/kube-flannel-ds init container flexvol-driver: index entry linux/arm64/v8: entrypoint /usr/local/bin/flexvol is x86-64, not aarch64"}}},
	}
	for _, c := range cases {
		t.Run(c.version+"/"+c.arch, func(t *testing.T) {
			cell := r.cell(c.version, c.arch)
			t0 := time.Now()
			ev, rep, err := r.e.preflight(context.Background(), testPlan(r.s, cell), PreflightWarn)
			if d := time.Since(t0); d > 10*time.Second {
				t.Errorf("audit took %s", d)
			}
			if err != nil {
				t.Fatalf("warn mode returned %v", err)
			}
			if rep == nil || len(rep.Findings) != 2 || rep.OK() != c.ok {
				t.Fatalf("report %+v", rep)
			}
			// The summary, then one line per container, ok ones included.
			if len(ev) != 3 || ev[0].Target != "registry "+addr || ev[0].OK != c.ok {
				t.Fatalf("evidence %+v", ev)
			}
			var flexvol matrix.Evidence
			for _, e := range ev[1:] {
				if e.Check != diagnose.PreflightPhase || e.Source != "linux/"+c.arch {
					t.Errorf("evidence %+v", e)
				}
				if e.Target == images.FlannelImageRef && !e.OK {
					t.Errorf("flannel stand-in: %s", e.Detail)
				}
				if strings.HasPrefix(e.Target, "docker.io/cnimatrix/flexvol:") {
					flexvol = e
				}
			}
			if flexvol.Target != "docker.io/cnimatrix/flexvol:"+c.version || flexvol.OK != c.ok {
				t.Errorf("flexvol evidence %+v", flexvol)
			}
			for _, d := range c.detail {
				if !strings.HasPrefix(flexvol.Detail, d) {
					t.Errorf("detail\n %s\nwant prefix\n %s", flexvol.Detail, d)
				}
			}
			if !c.ok && !strings.HasSuffix(ev[0].Detail, "; warn: the cell runs anyway") {
				t.Errorf("summary %q", ev[0].Detail)
			}

			// strict: the same audit fails the cell, and diagnose names it.
			ev, _, err = r.e.preflight(context.Background(), testPlan(r.s, cell), PreflightStrict)
			if c.ok != (err == nil) {
				t.Fatalf("strict: %v", err)
			}
			if err != nil {
				if !strings.HasPrefix(err.Error(), "arch-mismatch: 1 of 2 images cannot run on linux/arm64: docker.io/cnimatrix/flexvol:"+c.version+" (init container flexvol-driver): ") {
					t.Errorf("strict error %v", err)
				}
				res := matrix.Result{Phases: []matrix.Phase{{Name: "images", Outcome: matrix.Pass}, {Name: diagnose.PreflightPhase, Outcome: matrix.Fail, Error: err.Error(), Evidence: ev}}}
				if rc := diagnose.RootCause(res); rc != diagnose.ArchMismatch {
					t.Errorf("root cause %q", rc)
				}
			}
		})
	}
}

// What the audit cannot check: never ok, an error only in strict mode.
func TestPreflightUnauditable(t *testing.T) {
	r := newSeedRun(t)
	cell := r.cell("good", "arm64")
	missing := *r.s
	missing.CNI.ImageOverrides = map[string]string{images.FlexvolGood: "docker.io/cnimatrix/flexvol:no-such-tag"}
	ev, rep, err := r.e.preflight(context.Background(), testPlan(&missing, cell), PreflightWarn)
	if err != nil || rep == nil || rep.Count(archaudit.Error) != 1 || ev[0].OK {
		t.Fatalf("missing image, warn: %v %+v %+v", err, rep, ev)
	}
	ev, _, err = r.e.preflight(context.Background(), testPlan(&missing, cell), PreflightStrict)
	if err == nil || !strings.Contains(err.Error(), "1 of 2 images could not be audited for linux/arm64 in the registry the nodes pull from: docker.io/cnimatrix/flexvol:no-such-tag (init container flexvol-driver): ") {
		t.Fatalf("missing image, strict: %v", err)
	}
	res := matrix.Result{Phases: []matrix.Phase{{Name: diagnose.PreflightPhase, Outcome: matrix.Fail, Error: err.Error(), Evidence: ev}}}
	if rc := diagnose.RootCause(res); rc != diagnose.ImagePull {
		t.Errorf("root cause %q, want image-pull", rc)
	}

	gone := *r.s
	gone.CNI.Manifests = map[string]string{"good": filepath.Join(t.TempDir(), "gone.yaml")}
	ev, rep, err = r.e.preflight(context.Background(), testPlan(&gone, cell), PreflightWarn)
	if err != nil || rep != nil || len(ev) != 1 || ev[0].OK || !strings.Contains(ev[0].Detail, "images not audited: read manifest") {
		t.Fatalf("unreadable manifest, warn: %v %+v", err, ev)
	}
	if _, _, err = r.e.preflight(context.Background(), testPlan(&gone, cell), PreflightStrict); err == nil || !strings.Contains(err.Error(), "images not audited for linux/arm64: read manifest") {
		t.Fatalf("unreadable manifest, strict: %v", err)
	}
}

// joinedOperatorFiles writes a release's operator install files, joined in
// the catalog's order as a run applies them, and returns the file.
func joinedOperatorFiles(t *testing.T, d *calicodata.Data, tag string) string {
	t.Helper()
	cal, err := catalog.LoadCalico()
	if err != nil {
		t.Fatal(err)
	}
	v, err := cal.Version(tag)
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	for _, f := range v.Operator {
		b, err := os.ReadFile(d.ManifestPath(tag, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		all = append(append(all, "\n---\n"...), b...)
	}
	p := filepath.Join(t.TempDir(), "operator.yaml")
	if err := os.WriteFile(p, all, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// An operator install's file names only the operator's image; the images
// the operator deploys are audited too: per release, from its own
// custom-resources.yaml, at the registry the scenario points Calico at or
// the operator's default (D4). Over the real upstream files.
func TestDeployedImagesOfAnOperatorInstall(t *testing.T) {
	root, _ := filepath.Abs("../..")
	d := calicodata.FindForTest(t, root)
	for _, tag := range d.Tags() {
		p := joinedOperatorFiles(t, d, tag)
		for _, registry := range []string{"", "mirror.local:5000/cache"} {
			s := &scenario.Scenario{PodSubnet: "10.244.0.0/16", CNI: scenario.CNISpec{Name: "calico",
				Manifests: map[string]string{tag: p},
				Calico:    &calico.Options{PodCIDR: "10.244.0.0/16", Install: calico.InstallOperator, Registry: registry}}}
			got, err := deployedImages(&s.CNI, matrix.Cell{CNIVersion: tag})
			if err != nil {
				t.Fatalf("%s: %v", tag, err)
			}
			var refs []string
			for _, r := range got {
				refs = append(refs, r.Ref)
			}
			want := registry
			if want == "" {
				want = "docker.io"
				if tag >= "v3.31" {
					want = "quay.io"
				}
			}
			list := strings.Join(refs, " ")
			for _, c := range []string{"node", "cni", "kube-controllers", "typha", "csi", "node-driver-registrar", "apiserver"} {
				if !strings.Contains(list, want+"/calico/"+c+":"+tag) {
					t.Errorf("%s (registry %q): no %s/calico/%s:%s in %s", tag, registry, want, c, tag, list)
				}
			}
			// Goldmane and Whisker come with v3.30's custom resources.
			hasWhisker := strings.Contains(list, "/calico/whisker:"+tag) && strings.Contains(list, "/calico/goldmane:"+tag)
			if hasWhisker != (tag >= "v3.30") {
				t.Errorf("%s: goldmane/whisker deployed = %v: %s", tag, hasWhisker, list)
			}
		}
	}
	// A manifest install deploys nothing beyond its file.
	if got, err := deployedImages(&scenario.CNISpec{Name: "calico"}, matrix.Cell{CNIVersion: "v3.32.1"}); err != nil || len(got) != 0 {
		t.Errorf("manifest install: %v %v", got, err)
	}
}

// testPlan is the plan of cell as a run without options resolves it.
func testPlan(s *scenario.Scenario, cell matrix.Cell) *CellPlan {
	prov, err := providerByName(cell.Provider, dryRunProviders())
	return resolvePlan(s, cell, prov, err)
}
