package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cnimatrix/cnimatrix/internal/engine"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

// The reused-cluster speed mode must not change a verdict. This spec runs
// e2e/testdata/reuse-clusters.yaml (two flannel builds on one cluster, the
// first uninstalled before the second) and compares its last cell with the
// same cell on a cluster of its own: the one the matrix spec of
// scenarios/offline-flannel.yaml ran, or, when that spec did not run in this
// process, one run here. Its results stay out of the matrix (the same cell
// ID twice) and go to <out>/reuse-clusters.json.
var (
	reuseScenario *scenario.Scenario
	freshMu       sync.Mutex
	fresh         = map[string]matrix.Result{}
)

// recordFresh keeps the results of cells that ran on a cluster of their own.
func recordFresh(s *scenario.Scenario, r matrix.Result) {
	if s.ReuseClusters {
		return
	}
	freshMu.Lock()
	defer freshMu.Unlock()
	fresh[r.ID] = r
}

// reuseSpec is declared last inside the suite's container, so that it runs
// after the matrix specs (Ginkgo shuffles top-level containers, not the
// specs within one).
func reuseSpec() {
	It("reused clusters give the same verdict as fresh ones, every node back to its baseline between cells", Label("reuse"), func(ctx SpecContext) {
		if reuseScenario == nil {
			Skip("CNIMATRIX_SCENARIOS is set: the reused-cluster self-test runs with the default scenarios only")
		}
		s := reuseScenario
		cells := s.Cells()
		Expect(cells).To(HaveLen(2))
		last := cells[len(cells)-1]

		freshMu.Lock()
		want, ok := fresh[last.ID()]
		freshMu.Unlock()
		if !ok {
			own := *s
			own.ReuseClusters = false
			By("running " + last.ID() + " on a cluster of its own (its matrix spec did not run here)")
			want = eng.RunCell(ctx, &own, last)
		}

		eng.PlanReuse(s, cells)
		var got []matrix.Result
		for _, c := range cells {
			By("running " + c.ID() + " on the reused cluster")
			got = append(got, eng.RunCell(ctx, s, c))
		}
		b, err := json.MarshalIndent(map[string]any{"fresh": want, "reused": got}, "", "  ")
		Expect(err).NotTo(HaveOccurred())
		Expect(os.WriteFile(filepath.Join(outDir, "reuse-clusters.json"), b, 0o644)).To(Succeed())

		for _, r := range got {
			Expect(engine.CheckExpectation(s.ExpectFor(r.Cell), r)).To(Succeed())
		}
		first, second := got[0], got[1]
		Expect(second.ClusterName).To(Equal(first.ClusterName), "the second cell ran on the first cell's cluster")
		cl, ok := phase(second, "cluster")
		Expect(ok).To(BeTrue())
		Expect(cl.Evidence).To(ContainElement(HaveField("Detail", HavePrefix("reused: made for "+first.ID))))
		_, ok = phase(first, "baseline")
		Expect(ok).To(BeTrue(), "the first cell read its nodes before any CNI")

		// The uninstall between them left every node as it was made: the
		// flannel files, links and chains were there and are gone.
		un, ok := phase(first, engine.PhaseUninstall)
		Expect(ok).To(BeTrue(), "the first cell's CNI was uninstalled for the second")
		Expect(un.Outcome).To(Equal(matrix.Pass), "uninstall: %s", un.Error)
		cleaned := 0
		for _, e := range un.Evidence {
			if e.Check != engine.PhaseUninstall+" clean node" {
				continue
			}
			cleaned++
			Expect(e.OK).To(BeTrue(), e.Detail)
			Expect(e.Detail).To(And(ContainSubstring("10-flannel.conflist"), ContainSubstring("flannel.1"), ContainSubstring("FLANNEL-POSTRTG"), ContainSubstring("left: nothing")))
		}
		Expect(cleaned).To(Equal(s.Nodes), "one clean-node record per node")
		// The last cell of the cluster deletes it instead of uninstalling
		// for nobody.
		_, ok = phase(second, engine.PhaseUninstall)
		Expect(ok).To(BeFalse())
		Expect(hasPhase(second, "teardown")).To(BeTrue())

		// Same verdict, same checks with the same outcomes.
		Expect(second.Outcome).To(Equal(want.Outcome))
		Expect(second.RootCause).To(Equal(want.RootCause))
		Expect(checkOutcomes(second)).To(Equal(checkOutcomes(want)))
		GinkgoWriter.Printf("reused: %s %s in %.1fs (fresh: %s in %.1fs); uninstall %.1fs\n",
			second.ID, second.Outcome, second.DurationMS/1000, want.Outcome, want.DurationMS/1000, un.DurationMS/1000)
	}, SpecTimeout(20*time.Minute))
}

// checkOutcomes lists a result's checks as "name outcome".
func checkOutcomes(r matrix.Result) []string {
	var out []string
	for _, p := range r.Phases {
		if strings.HasPrefix(p.Name, "check:") {
			out = append(out, p.Name+" "+string(p.Outcome))
		}
	}
	return out
}
