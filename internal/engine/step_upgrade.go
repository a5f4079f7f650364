package engine

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/cnimatrix/cnimatrix/internal/checks"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

// Phases of an upgrade-path cell, after the FROM version's checks passed.
const (
	PhaseUpgrade             = "upgrade"              // apply TO in place, wait for the rollout
	PhaseUpgradeAvailability = "upgrade-availability" // nginx across nodes during that window
	afterUpgradePrefix       = "after-upgrade "       // the checks again, on TO
)

// stepUpgrade upgrades the cell's CNI in place to the scenario's
// upgrade.to the way a manifest install is upgraded (apply the next
// release's manifest over the running one), while a prober fetches nginx
// across nodes; then it runs the checks again. Its phases: "upgrade
// cni-install", "upgrade cni-ready", "upgrade", "upgrade-availability" and
// "after-upgrade check:*".
var stepUpgrade = Step{Name: PhaseUpgrade, Applies: func(c *cellRun) bool { return c.plan.Upgrade != nil }, Run: runUpgrade}

func runUpgrade(ctx context.Context, c *cellRun) StepResult {
	up := c.plan.Upgrade
	// The phases are recorded as they happen: the prober's window spans
	// several.
	r := StepResult{Recorded: true}
	fail := func(err error) StepResult {
		_ = c.phase(PhaseUpgrade, PhaseUpgrade, func() ([]matrix.Evidence, error) { return nil, err })
		r.Failed = true
		return r
	}
	pods, err := cniPods(ctx, c.client, c.plan.cni())
	if err != nil {
		return fail(err)
	}
	prober, err := checks.StartProber(ctx, c.env, up.ProbeInterval)
	if err != nil {
		return fail(fmt.Errorf("start prober: %w", err))
	}
	c.log.Infof("upgrade %s → %s: probing nginx across nodes every %s", c.plan.Cell.CNIVersion, up.To, up.ProbeInterval)
	upErr := c.phase(PhaseUpgrade+" cni-install", PhaseUpgrade, func() ([]matrix.Evidence, error) {
		return c.apply(ctx, up.Manifest, PhaseUpgrade+" cni-install")
	})
	if upErr == nil {
		upErr = c.phase(PhaseUpgrade+" cni-ready", PhaseUpgrade, func() ([]matrix.Evidence, error) {
			return c.waitReady(ctx, PhaseUpgrade+" cni-ready")
		})
	}
	if upErr == nil {
		upErr = c.phase(PhaseUpgrade, PhaseUpgrade, func() ([]matrix.Evidence, error) {
			return rolloutEvidence(ctx, c.client, c.plan.cni(), pods)
		})
	}
	// A few more rounds after the rollout: a CNI may drop traffic just
	// after its pods turn ready (routes and rules being rewritten).
	settle(ctx, 3*up.ProbeInterval)
	st := prober.Stop()
	availErr := c.phase(PhaseUpgradeAvailability, PhaseUpgrade, func() ([]matrix.Evidence, error) {
		err := st.Judge(up.MaxFailedProbes)
		return matrixEvidence(st.Evidence(PhaseUpgradeAvailability, err == nil)), err
	})
	if upErr != nil || availErr != nil {
		r.Failed = true
		if upErr != nil {
			return r
		}
	}
	after := c.runChecks(ctx, afterUpgradePrefix, up.Checks)
	c.result.Phases = append(c.result.Phases, after.Phases...)
	r.Failed = r.Failed || after.Failed
	return r
}

func settle(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// cniPods lists the CNI's pods by the scenario's namespace and selector.
func cniPods(ctx context.Context, client kubernetes.Interface, cni *scenario.CNISpec) ([]corev1.Pod, error) {
	list, err := client.CoreV1().Pods(cni.Namespace).List(ctx, metav1.ListOptions{LabelSelector: cni.Selector})
	if err != nil {
		return nil, fmt.Errorf("list CNI pods in %s (%s): %w", cni.Namespace, cni.Selector, err)
	}
	return list.Items, nil
}

// rolloutEvidence says, for each CNI pod after the upgrade, which pod it
// replaced (or that it is one from before) and what images it runs. An
// upgrade that replaced no pod did not upgrade anything the checks could
// tell apart, and fails: the cell would claim an upgrade it never tested.
func rolloutEvidence(ctx context.Context, client kubernetes.Interface, cni *scenario.CNISpec, before []corev1.Pod) ([]matrix.Evidence, error) {
	after, err := cniPods(ctx, client, cni)
	if err != nil {
		return nil, err
	}
	old := map[types.UID]corev1.Pod{}
	oldOn := map[string][]string{} // node -> pods before
	for _, p := range before {
		old[p.UID] = p
		oldOn[p.Spec.NodeName] = append(oldOn[p.Spec.NodeName], fmt.Sprintf("%s [%s]", p.Name, strings.Join(podImages(p), ", ")))
	}
	var ev []matrix.Evidence
	replaced, kept := 0, 0
	for _, p := range after {
		if p.DeletionTimestamp != nil {
			continue
		}
		e := matrix.Evidence{Check: PhaseUpgrade, Source: p.Spec.NodeName, Target: p.Name, OK: true}
		if _, ok := old[p.UID]; ok {
			kept++
			e.Detail = fmt.Sprintf("kept from before the upgrade, runs %s", strings.Join(podImages(p), ", "))
		} else {
			replaced++
			e.Detail = fmt.Sprintf("new, runs %s; on this node before: %s", strings.Join(podImages(p), ", "), strings.Join(orNone(oldOn[p.Spec.NodeName]), "; "))
		}
		ev = append(ev, e)
	}
	slices.SortFunc(ev, func(a, b matrix.Evidence) int { return strings.Compare(a.Source+a.Target, b.Source+b.Target) })
	if replaced == 0 {
		return ev, fmt.Errorf("the upgrade replaced none of the %d CNI pods (%d kept): TO runs the same pods as FROM, so nothing was upgraded", len(before), kept)
	}
	return ev, nil
}

func podImages(p corev1.Pod) []string {
	var out []string
	for _, c := range p.Spec.Containers {
		out = append(out, c.Image)
	}
	return out
}

func orNone(xs []string) []string {
	if len(xs) == 0 {
		return []string{"none"}
	}
	return xs
}
