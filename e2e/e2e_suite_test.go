// Package e2e is the Ginkgo shell over the engine: one spec per matrix cell,
// labelled cni:…, version:…, k8s:…, arch:…, provider:…, so --label-filter
// picks cells. The matrix is written once, after the suite, from the results
// every spec attached to its report.
package e2e

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/types"
	. "github.com/onsi/gomega"

	"github.com/cnimatrix/cnimatrix/internal/calicodata"
	"github.com/cnimatrix/cnimatrix/internal/catalog"
	"github.com/cnimatrix/cnimatrix/internal/engine"
	"github.com/cnimatrix/cnimatrix/internal/logx"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/repo"
	"github.com/cnimatrix/cnimatrix/internal/report"
	"github.com/cnimatrix/cnimatrix/internal/runner"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

// Settings come from the environment so that `go test`, `ginkgo` and make
// all drive the suite the same way.
//
//	CNIMATRIX_SCENARIOS  comma-separated scenario files (default: the offline
//	                     scenario, its arm64 twin (a QEMU VM worker on amd64
//	                     hosts), the 2019 seed reproduced with fixtures, the
//	                     offline upgrade path with a soak, the negative
//	                     self-test scenarios and, when the Calico data is
//	                     found (internal/calicodata), real Calico v3.32.1
//	                     rebuilt from source: scenarios/calico-source.yaml)
//	                     and, unless CNIMATRIX_SCENARIOS is set, the
//	                     reused-cluster self-test (reuse_test.go)
//	CNIMATRIX_OUT        where matrix.json/.md/.xml go (default _out/e2e)
//	CNIMATRIX_KEEP=1     keep clusters
//	CNIMATRIX_PREFLIGHT  warn (default), strict or off: what a cell does with
//	                     the audit of its images for its arch (cnimatrix run
//	                     --preflight)
//	ARTIFACTS            artifacts root (default <out>/artifacts)
var (
	suite     *runner.Suite
	outDir    string
	eng       *engine.Engine
	preflight engine.Preflight
	// before is what the host had before the suite, read by process 1
	// before any process creates anything.
	before hostState
)

// hostState is what the leftover check compares against.
type hostState struct {
	Volumes []string `json:"volumes"`
	Taps    []string `json:"taps"`
}

const resultEntry = "cnimatrix-result"

func TestE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("the e2e suite creates real clusters; skipped with -short")
	}
	root, err := repo.Root()
	if err != nil {
		t.Fatal(err)
	}
	if preflight, err = engine.ParsePreflight(os.Getenv("CNIMATRIX_PREFLIGHT")); err != nil {
		t.Fatalf("CNIMATRIX_PREFLIGHT: %v", err)
	}
	paths := os.Getenv("CNIMATRIX_SCENARIOS")
	reusePath := ""
	if paths == "" {
		reusePath = filepath.Join(root, "e2e/testdata/reuse-clusters.yaml")
		paths = strings.Join([]string{
			filepath.Join(root, "scenarios/offline-flannel.yaml"),
			filepath.Join(root, "scenarios/offline-flannel-arm64.yaml"),
			filepath.Join(root, "scenarios/seed-2019.yaml"),
			filepath.Join(root, "scenarios/seed-2019-calico.yaml"),
			filepath.Join(root, "scenarios/offline-flannel-upgrade.yaml"),
			filepath.Join(root, "e2e/testdata/negative-missing-image.yaml"),
			filepath.Join(root, "e2e/testdata/negative-target-port.yaml"),
			filepath.Join(root, "e2e/testdata/negative-upgrade-breaks.yaml"),
			filepath.Join(root, "e2e/testdata/negative-calico-shaped.yaml"),
			filepath.Join(root, "e2e/testdata/negative-controller-arch.yaml"),
		}, ",")
		// Real Calico needs the Calico data (its source and manifests):
		// without it the cell is left out, said so, unless required.
		if _, err := calicodata.Find(root); err == nil {
			paths += "," + filepath.Join(root, "scenarios/calico-source.yaml")
		} else if os.Getenv(calicodata.RequireEnv) != "" {
			t.Fatalf("real Calico cell: %v", err)
		} else {
			t.Logf("real Calico cell left out: %v", err)
		}
		if !hostHasIPIP() {
			paths += "," + filepath.Join(root, "e2e/testdata/negative-kernel-ipip.yaml")
		}
	}
	fetchCalicoManifests(t, root)
	// Specs are generated from the scenarios, so they are loaded before
	// RunSpecs, by the same helper as `cnimatrix run` (which refuses two
	// cells with one ID).
	var list []string
	for _, p := range strings.Split(paths, ",") {
		if !filepath.IsAbs(p) {
			p = filepath.Join(root, p)
		}
		list = append(list, p)
	}
	if suite, err = runner.Load(list, runner.LoadOptions{RepoRoot: root}); err != nil {
		t.Fatalf("scenarios: %v", err)
	}
	if reusePath != "" {
		cat, err := catalog.Load()
		if err != nil {
			t.Fatal(err)
		}
		if reuseScenario, err = scenario.Load(reusePath, cat, root); err != nil {
			t.Fatalf("scenario: %v", err)
		}
	}
	outDir = os.Getenv("CNIMATRIX_OUT")
	if outDir == "" {
		outDir = filepath.Join(root, "_out", "e2e")
	}
	RegisterFailHandler(Fail)
	suiteCfg, reporterCfg := GinkgoConfiguration()
	if suiteCfg.Timeout < 3*time.Hour {
		suiteCfg.Timeout = 3 * time.Hour
	}
	RunSpecs(t, "cnimatrix e2e", suiteCfg, reporterCfg)
}

// Process 1 reads the host's state and builds every image the suite needs
// (the cache is on disk, shared); every process then starts its own engine
// (network and registry) and prepares it, which finds the builds cached.
// Under `ginkgo -p` the specs are spread over the processes; the cells of
// a scenario that reuses clusters are one Ordered container, so they run
// in one process, in order, and that process's reuse plan holds.
var _ = SynchronizedBeforeSuite(func(ctx SpecContext) []byte {
	st := hostState{Volumes: dockerList(GinkgoT(), "volume", "ls", "-q"), Taps: taps(GinkgoT())}
	// The run IDs of this suite's processes are collected here; an earlier
	// suite's are not this one's to check.
	Expect(os.RemoveAll(filepath.Join(outDir, "run-ids"))).To(Succeed())
	startEngine(ctx)
	b, err := json.Marshal(st)
	Expect(err).NotTo(HaveOccurred())
	return b
}, func(ctx SpecContext, b []byte) {
	Expect(json.Unmarshal(b, &before)).To(Succeed())
	if eng == nil {
		startEngine(ctx)
	}
}, NodeTimeout(75*time.Minute))

func startEngine(ctx SpecContext) {
	log := logx.New(GinkgoWriter, os.Getenv("CNIMATRIX_VERBOSE") != "")
	var err error
	eng, err = engine.Start(ctx, engine.Options{
		Log:          log,
		Keep:         os.Getenv("CNIMATRIX_KEEP") != "",
		WorkDir:      filepath.Join(outDir, "clusters"),
		ArtifactsDir: artifactsDir(),
		Preflight:    preflight,
	})
	Expect(err).NotTo(HaveOccurred(), "start the engine (Docker engine, network, registry)")
	Expect(os.MkdirAll(filepath.Join(outDir, "run-ids"), 0o755)).To(Succeed())
	Expect(os.WriteFile(filepath.Join(outDir, "run-ids", fmt.Sprint(GinkgoParallelProcess())), []byte(eng.RunID()), 0o644)).To(Succeed())
	// Prepare's failure is every cell's infra-error (runner.PrepareFailed),
	// as in `cnimatrix run`: the specs record it, and the suite goes on to
	// write the matrix.
	prepareErr = suite.Prepare(ctx, eng)
	if prepareErr == nil && reuseScenario != nil {
		prepareErr = eng.Prepare(ctx, reuseScenario)
	}
	if prepareErr != nil {
		GinkgoWriter.Printf("prepare: %v\n", prepareErr)
	}
}

var prepareErr error

// Every process closes its engine; then process 1, once all have, checks
// that no process left a container, network, volume, VM or tap behind.
var _ = SynchronizedAfterSuite(func(ctx SpecContext) {
	if eng != nil {
		Expect(eng.Close(ctx)).To(Succeed())
	}
}, func(ctx SpecContext) {
	if os.Getenv("CNIMATRIX_KEEP") != "" {
		return
	}
	ids, _ := filepath.Glob(filepath.Join(outDir, "run-ids", "*"))
	for _, f := range ids {
		id, err := os.ReadFile(f)
		Expect(err).NotTo(HaveOccurred())
		assertNothingLeft(GinkgoT(), string(id), before.Volumes)
		assertNoVMLeft(GinkgoT(), string(id), before.Taps)
		_ = os.Remove(f)
	}
}, NodeTimeout(10*time.Minute))

func artifactsDir() string {
	if d := os.Getenv("ARTIFACTS"); d != "" {
		return d
	}
	return filepath.Join(outDir, "artifacts")
}

var _ = Describe("cnimatrix", func() {
	for _, s := range suite.Scenarios {
		specs := func() {
			for _, c := range suite.Cells {
				if c.Scenario == s {
					cellSpec(c)
				}
			}
		}
		if s.ReuseClusters {
			Describe(s.Name, Ordered, specs)
		} else {
			Describe(s.Name, specs)
		}
	}
	reuseSpec()
	existingSpec()
	imageSourcesSpec()
})

// cellSpec is one cell's spec: run it, attach its result to the report (the
// matrix is written from there), and assert what it must show.
func cellSpec(c runner.Cell) {
	cell, s := c.Cell, c.Scenario
	labels := Label("cni:"+cell.CNI, "version:"+cell.CNIVersion, "k8s:"+cell.Kubernetes, "arch:"+cell.Arch, "provider:"+cell.Provider, "scenario:"+s.Name)
	if cell.UpgradeTo != "" {
		labels = append(labels, "upgrade-to:"+cell.UpgradeTo)
	}
	It(cell.ID(), labels, func(ctx SpecContext) {
		var res matrix.Result
		if prepareErr != nil {
			res = runner.PrepareFailed(cell, prepareErr)
		} else {
			res = eng.RunCell(ctx, s, cell)
		}
		recordFresh(s, res)
		b, err := json.Marshal(res)
		Expect(err).NotTo(HaveOccurred())
		AddReportEntry(resultEntry, string(b), ReportEntryVisibilityNever)
		GinkgoWriter.Printf("%s: %s %s %s\n", cell.ID(), res.Outcome, res.RootCause, res.Reason)
		Expect(engine.CheckExpectation(c.Expect(), res)).To(Succeed())
		assertCell(GinkgoT(), s, res)
		assertRealCalico(s, res)
	}, SpecTimeout(40*time.Minute))
}

// assertCell checks what a cell's result must show beyond its outcome.
func assertCell(t tb, s *scenario.Scenario, r matrix.Result) {
	t.Helper()
	if r.Outcome == matrix.Pass {
		for _, want := range []string{"images", "cluster", "cni-install", "cni-ready", "teardown"} {
			if !hasPhase(r, want) && !(want == "teardown" && os.Getenv("CNIMATRIX_KEEP") != "") {
				t.Errorf("cell %s passed without phase %s", r.ID, want)
			}
		}
		assertArchProof(t, r)
	}
	if r.Outcome == matrix.Fail {
		assertArtifacts(t, r)
	}
	if r.UpgradeTo != "" {
		assertUpgrade(t, r)
	}
	if s.Soak.Duration > 0 && r.Outcome == matrix.Pass {
		assertSoak(t, r, s.Soak)
	}
}

// tb is what the assertions need of GinkgoT().
type tb interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
}

// The matrix is written from the aggregated report, so it is complete also
// when specs ran in parallel processes; a cell whose spec did not record a
// result stays unknown, and one filtered out is skipped with that reason.
// The files written are then read back and checked.
var _ = ReportAfterSuite("matrix", func(r Report) {
	if r.SuiteConfig.DryRun {
		return
	}
	m := suite.Matrix(engine.HostInfo("e2e"))
	for _, sr := range r.SpecReports {
		if sr.LeafNodeType != types.NodeTypeIt {
			continue
		}
		recorded := false
		for _, e := range sr.ReportEntries {
			if e.Name != resultEntry {
				continue
			}
			var res matrix.Result
			if err := json.Unmarshal([]byte(e.Value.String()), &res); err == nil {
				m.Record(res)
				recorded = true
			}
		}
		if !recorded && sr.State.Is(types.SpecStateSkipped|types.SpecStatePending) {
			for _, c := range suite.Cells {
				if c.ID() == sr.LeafNodeText {
					m.Record(matrix.Result{Cell: c.Cell, Outcome: matrix.Skipped, Reason: "not selected (label filter or focus)"})
				}
			}
		}
	}
	files, err := report.WriteAll(outDir, m)
	Expect(err).NotTo(HaveOccurred())
	GinkgoWriter.Printf("%s\nmatrix: %s %s %s\n", m.Summary(), files.JSON, files.Markdown, files.JUnit)
	assertMatrixFiles(GinkgoT())
})

// assertMatrixFiles checks what the suite wrote: the files exist, parse,
// and hold one entry per cell with its expected outcome.
func assertMatrixFiles(t tb) {
	t.Helper()
	m, err := matrix.ReadJSON(filepath.Join(outDir, "matrix.json"))
	if err != nil {
		t.Fatalf("matrix.json: %v", err)
	}
	md, err := os.ReadFile(filepath.Join(outDir, "matrix.md"))
	if err != nil {
		t.Fatalf("matrix.md: %v", err)
	}
	x, err := os.ReadFile(filepath.Join(outDir, "matrix.xml"))
	if err != nil {
		t.Fatalf("matrix.xml: %v", err)
	}
	var junit struct {
		Suites []struct {
			Name  string `xml:"name,attr"`
			Cases []struct {
				Name string `xml:"name,attr"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(x, &junit); err != nil {
		t.Fatalf("matrix.xml does not parse: %v", err)
	}
	for _, c := range suite.Cells {
		r, ok := m.Get(c.ID())
		if !ok {
			t.Errorf("matrix.json has no cell %s", c.ID())
			continue
		}
		if r.Outcome == matrix.Skipped && strings.HasPrefix(r.Reason, "not selected") {
			continue
		}
		if err := engine.CheckExpectation(c.Expect(), r); err != nil {
			t.Errorf("matrix.json: %v", err)
		}
		if !strings.Contains(string(md), c.ID()) {
			t.Errorf("matrix.md does not mention %s", c.ID())
		}
		found := false
		for _, su := range junit.Suites {
			if su.Name == c.ID() && len(su.Cases) > 0 {
				found = true
			}
		}
		if !found {
			t.Errorf("matrix.xml has no testsuite with testcases for %s", c.ID())
		}
	}
}

func hasPhase(r matrix.Result, name string) bool {
	for _, p := range r.Phases {
		if p.Name == name && p.Outcome == matrix.Pass {
			return true
		}
	}
	return false
}

// assertArtifacts checks a failed cell left a debugging folder without secrets.
func assertArtifacts(t tb, r matrix.Result) {
	t.Helper()
	if r.Artifacts == "" {
		t.Errorf("failed cell %s has no artifacts folder", r.ID)
		return
	}
	if r.ClusterName == "" {
		// Failed before it had a cluster (a strict preflight): the audit is
		// all there is to keep.
		if _, err := os.Stat(filepath.Join(r.Artifacts, "preflight.json")); err != nil {
			t.Errorf("artifacts of %s: %v", r.ID, err)
		}
		return
	}
	for _, f := range []string{"pods.yaml", "pods.txt", "events.txt", "services.yaml", "endpointslices.yaml", "nodes.yaml"} {
		if _, err := os.Stat(filepath.Join(r.Artifacts, f)); err != nil {
			t.Errorf("artifacts of %s: %v", r.ID, err)
		}
	}
	journals, _ := filepath.Glob(filepath.Join(r.Artifacts, "nodes", "*", "kubelet.log"))
	if len(journals) == 0 {
		t.Errorf("artifacts of %s: no node kubelet journal", r.ID)
	}
	secret := regexp.MustCompile(`\b[a-z0-9]{6}\.[a-z0-9]{16}\b|-----BEGIN [A-Z ]*PRIVATE KEY-----`)
	_ = filepath.WalkDir(r.Artifacts, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err == nil && secret.Match(b) {
			t.Errorf("artifacts file %s holds a bootstrap token or private key", p)
		}
		return nil
	})
}

// assertArchProof checks that a passing cell proved its nodes' arch: the
// NodeArch check on every node and, for VM cells, the fidelity tier and
// the provider's proof that x86-64 binaries do not run on the VM.
func assertArchProof(t tb, r matrix.Result) {
	t.Helper()
	var arch *matrix.Phase
	for i := range r.Phases {
		if r.Phases[i].Name == "check:NodeArch" {
			arch = &r.Phases[i]
		}
	}
	if arch == nil || arch.Outcome != matrix.Pass {
		t.Errorf("cell %s passed without a passing check:NodeArch", r.ID)
		return
	}
	uname := map[string]string{"amd64": "uname -m x86_64", "arm64": "uname -m aarch64"}[r.Arch]
	found := false
	for _, e := range arch.Evidence {
		if e.OK && strings.Contains(e.Detail, "nodeInfo.architecture "+r.Arch) && strings.Contains(e.Detail, uname) {
			found = true
		}
	}
	if !found {
		t.Errorf("cell %s: no NodeArch evidence of a %s node (%s): %+v", r.ID, r.Arch, uname, arch.Evidence)
	}
	// DNS says where it was served: each CoreDNS replica asked by name,
	// with its node's arch.
	if dns, ok := phase(r, "check:PodToServiceDNS"); ok {
		served := false
		for _, e := range dns.Evidence {
			if e.OK && strings.Contains(e.Target, "at CoreDNS pod") && strings.Contains(e.Detail, "served on ") {
				served = true
				t.Logf("cell %s: %s: %s", r.ID, e.Target, e.Detail)
			}
		}
		if !served {
			t.Errorf("cell %s: PodToServiceDNS does not say which CoreDNS replica, node and arch answered: %+v", r.ID, dns.Evidence)
		}
	}
	if r.Provider != "qemu" {
		if r.Fidelity != matrix.FidelityNative {
			t.Errorf("cell %s: fidelity %q, want native", r.ID, r.Fidelity)
		}
		return
	}
	if scenario.HostArch() != r.Arch && r.Fidelity != matrix.FidelityVMEmulated {
		t.Errorf("cell %s: fidelity %q, want %s", r.ID, r.Fidelity, matrix.FidelityVMEmulated)
	}
	proof := false
	for _, p := range r.Phases {
		for _, e := range p.Evidence {
			if p.Name == "cluster" && strings.Contains(e.Detail, "uname -m aarch64") && strings.Contains(strings.ToLower(e.Detail), "exec format error") {
				proof = true
			}
		}
	}
	if !proof {
		t.Errorf("cell %s: the cluster phase has no proof that the VM refuses x86-64 binaries (exec format error)", r.ID)
	}
}

// assertUpgrade: an upgrade-path cell that got as far as the upgrade
// recorded the probing of its window, with requests made; a passing one
// replaced CNI pods, ran the checks again and lost no request.
func assertUpgrade(t tb, r matrix.Result) {
	t.Helper()
	if !hasPhase(r, engine.PhaseUpgrade+" cni-install") {
		return // failed before the upgrade; its expectation says why
	}
	avail, ok := phase(r, engine.PhaseUpgradeAvailability)
	if !ok {
		t.Errorf("cell %s: upgraded without phase %s", r.ID, engine.PhaseUpgradeAvailability)
		return
	}
	if len(avail.Evidence) == 0 || avail.Evidence[0].Attempts < 5 {
		t.Errorf("cell %s: the upgrade window made too few requests to measure anything: %+v", r.ID, avail.Evidence)
	}
	if r.Outcome != matrix.Pass {
		return
	}
	t.Logf("cell %s upgrade window: %s", r.ID, avail.Evidence[0].Detail)
	if !strings.Contains(avail.Evidence[0].Detail, " 0 failed") {
		t.Errorf("cell %s passed with failed requests in the upgrade window: %s", r.ID, avail.Evidence[0].Detail)
	}
	up, _ := phase(r, engine.PhaseUpgrade)
	replaced := 0
	for _, e := range up.Evidence {
		if strings.HasPrefix(e.Detail, "new, runs ") && strings.Contains(e.Detail, r.UpgradeTo) {
			replaced++
		}
	}
	if replaced == 0 {
		t.Errorf("cell %s passed but no CNI pod runs %s: %+v", r.ID, r.UpgradeTo, up.Evidence)
	}
	if !hasPhase(r, "after-upgrade check:PodToPodAcrossNodes") {
		t.Errorf("cell %s passed without running the checks after the upgrade", r.ID)
	}
}

// assertSoak: a passing cell of a scenario with a soak probed for the whole
// duration at about the interval.
func assertSoak(t tb, r matrix.Result, sk scenario.Soak) {
	t.Helper()
	p, ok := phase(r, engine.PhaseSoak)
	if !ok || len(p.Evidence) == 0 {
		t.Errorf("cell %s passed without a soak", r.ID)
		return
	}
	t.Logf("cell %s soak: %s", r.ID, p.Evidence[0].Detail)
	if p.DurationMS < float64(sk.Duration/time.Millisecond) {
		t.Errorf("cell %s: soak lasted %.0f ms, want at least %s", r.ID, p.DurationMS, sk.Duration)
	}
	// At least half the rounds the interval allows (each round probes every
	// pair across nodes): an exec round trip may be slower than the interval.
	if want := int(sk.Duration / sk.Interval / 2); p.Evidence[0].Attempts < want {
		t.Errorf("cell %s: soak made %d requests, want at least %d", r.ID, p.Evidence[0].Attempts, want)
	}
}

func phase(r matrix.Result, name string) (matrix.Phase, bool) {
	for _, p := range r.Phases {
		if p.Name == name {
			return p, true
		}
	}
	return matrix.Phase{}, false
}

// hostHasIPIP reports whether this host's kernel can make an ipip link
// (tried in a throwaway network namespace): kind nodes share the host's
// kernel, so the kernel-feature self-test only means something without it.
func hostHasIPIP() bool {
	err := exec.Command("unshare", "--net", "ip", "link", "add", "cmxipip", "type", "ipip").Run()
	return err == nil
}
