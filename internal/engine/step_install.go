package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/cnimatrix/cnimatrix/internal/archaudit"
	"github.com/cnimatrix/cnimatrix/internal/install"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

// stepInstall applies the cell's configured manifest (the scenario's image
// overrides and Calico options, and in a mixed cluster the arch pins).
var stepInstall = Step{Name: "cni-install", Applies: func(c *cellRun) bool { return !c.plan.installed() }, Run: func(ctx context.Context, c *cellRun) StepResult {
	if c.plan.ManifestErr != nil {
		return StepResult{Err: c.plan.ManifestErr}
	}
	if c.plan.onExisting() {
		if err := c.refuseOtherCNI(ctx); err != nil {
			return StepResult{Err: err, Infra: true}
		}
	}
	ev, err := c.apply(ctx, c.plan.Manifest, "cni-install")
	return StepResult{Evidence: ev, Err: err}
}}

// stepReady waits until the applied workloads are ready (for an operator
// install, what the operator deploys too), once every node of the cluster
// is registered: a DaemonSet's counts say nothing about a node the API
// does not know yet (a VM worker registers late under emulation).
var stepReady = Step{Name: "cni-ready", Run: func(ctx context.Context, c *cellRun) StepResult {
	if ev, err := c.waitNodesRegistered(ctx); err != nil {
		return StepResult{Evidence: ev, Err: err, Infra: true}
	}
	ev, err := c.waitReady(ctx, "cni-ready")
	if nr, ok := errors.AsType[*install.NotReadyError](err); ok && errors.Is(nr.Err, context.DeadlineExceeded) {
		if waiting := flaggedNotRun(nr, c.audit); len(waiting) > 0 {
			// The preflight predicted how these containers fail; under load
			// an emulated node may not have run them by the deadline. The
			// verdict must rest on what the node did (exec format error,
			// no match for platform), the same on a busy host as on a quiet
			// one, so the wait is given once more: it ends as soon as the
			// runtime refuses the image.
			c.log.Infof("cni-ready: %s not run yet, and the preflight flagged its image: waiting up to %s more for the node's own verdict", strings.Join(waiting, ", "), c.timeouts.CNIReady)
			first := matrix.Evidence{Check: "cni-ready", Target: strings.Join(waiting, ", "),
				Detail: fmt.Sprintf("not run after %s, image flagged by the preflight: waited once more", nr.Waited.Truncate(time.Second))}
			ev, err = c.waitReady(ctx, "cni-ready")
			first.OK = err == nil
			ev = append([]matrix.Evidence{first}, ev...)
		}
	}
	return StepResult{Evidence: ev, Err: err}
}}

// flaggedNotRun names the containers of not-ready pods that have not ended
// once (no termination, no restart, not ready) although the preflight
// flagged their image as unable to run on the cell's arch.
func flaggedNotRun(nr *install.NotReadyError, audit *archaudit.Report) []string {
	if audit == nil {
		return nil
	}
	var out []string
	for _, w := range nr.Workloads {
		for _, p := range w.Pods {
			for _, ct := range p.Containers {
				// "running" counts as not run yet: the runtime reports a
				// started container before the kernel refused its binary,
				// and a loaded kubelet reports the refusal late.
				ran := ct.State == "terminated" || ct.Restarts > 0 || ct.LastReason != "" || ct.Ready
				if ran || !flagged(audit, w.Workload, ct) {
					continue
				}
				out = append(out, fmt.Sprintf("%s %s of pod %s", ct.Kind(), ct.Name, p.Name))
			}
		}
	}
	return out
}

// flagged reports whether the audit found the image of workload w's
// container ct unable to run (no variant for the arch, or binaries of
// another machine).
func flagged(audit *archaudit.Report, w install.Workload, ct install.ContainerReport) bool {
	for _, f := range audit.Findings {
		if (f.Kind == archaudit.NoVariant || f.Kind == archaudit.Mislabeled) &&
			strings.EqualFold(f.Workload, w.Kind+" "+w.Namespace+"/"+w.Name) && f.Container == ct.Name && f.InitContainer == ct.Init {
			return true
		}
	}
	return false
}

// waitNodesRegistered waits until every node the provider made is a Node
// of the API.
func (c *cellRun) waitNodesRegistered(ctx context.Context) ([]matrix.Evidence, error) {
	wctx, cancel := context.WithTimeout(ctx, c.timeouts.CNIReady)
	defer cancel()
	var missing []string
	err := install.Poll(wctx, func(ctx context.Context) (bool, error) {
		list, err := c.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil // the API server may be restarting: poll on
		}
		known := map[string]bool{}
		for _, n := range list.Items {
			known[n.Name] = true
		}
		missing = missing[:0]
		for _, n := range c.cl.Nodes {
			if !known[n.Name] {
				missing = append(missing, n.Name)
			}
		}
		return len(missing) == 0, nil
	})
	if err != nil {
		return []matrix.Evidence{{Check: "cni-ready", Source: "api", Target: strings.Join(missing, ", "), OK: false, Detail: "never registered as a Node"}},
			fmt.Errorf("nodes %s never registered with the API server: %w", strings.Join(missing, ", "), err)
	}
	return nil, nil
}

// apply applies the manifest at path as configured, as phase name, and
// remembers what it applied (the uninstall of a reused cluster, the arch
// coverage of its workloads).
func (c *cellRun) apply(ctx context.Context, path, name string) ([]matrix.Evidence, error) {
	objs, n, err := configuredManifest(path, c.plan.cni())
	if err != nil {
		return nil, err
	}
	if n > 0 {
		c.log.Infof("image overrides: replaced %d container images", n)
	}
	var ev []matrix.Evidence
	if c.plan.mixed() {
		pinned, err := pinToArch(objs, c.plan.Cell.Arch)
		if err != nil {
			return nil, err
		}
		for _, w := range pinned {
			ev = append(ev, matrix.Evidence{Check: name, Target: w, OK: true,
				Detail: fmt.Sprintf("pinned to %s=%s by cnimatrix: the control plane is %s, and the cell asks about %s", archLabel, c.plan.Cell.Arch, c.plan.controlPlaneArch(), c.plan.Cell.Arch)})
		}
	}
	c.applied = append(c.applied, objs)
	ictx, cancel := context.WithTimeout(ctx, c.timeouts.CNIReady)
	defer cancel()
	ev = append([]matrix.Evidence{{Check: name, Target: path, OK: true, Detail: fmt.Sprintf("%d objects applied", len(objs))}}, ev...)
	return ev, install.Apply(ictx, c.cfg, objs, install.ApplyOptions{FieldManager: "cnimatrix", Log: c.log})
}

// waitReady waits for the workloads of the last manifest applied.
func (c *cellRun) waitReady(ctx context.Context, name string) ([]matrix.Evidence, error) {
	var objs []*unstructured.Unstructured
	if n := len(c.applied); n > 0 {
		objs = c.applied[n-1]
	}
	wctx, cancel := context.WithTimeout(ctx, c.timeouts.CNIReady)
	defer cancel()
	err := install.WaitReady(wctx, c.cfg, objs, install.ApplyOptions{FieldManager: "cnimatrix", Log: c.log})
	if nr, ok := errors.AsType[*install.NotReadyError](err); ok {
		return evidenceFromNotReady(nr, name), err
	}
	if err != nil {
		return nil, err
	}
	if operatorInstall(c.plan.cni()) {
		if err := c.e.waitOperator(wctx, c.cfg, c.client, c.log); err != nil {
			return operatorEvidence(err), err
		}
	}
	return vmReadyEvidence(ctx, c.client, c.cl), nil
}

// evidenceFromNotReady turns the install wait's report into evidence lines:
// one per workload and one per pod that is not ready.
func evidenceFromNotReady(nr *install.NotReadyError, check string) []matrix.Evidence {
	var ev []matrix.Evidence
	for _, w := range nr.Workloads {
		ev = append(ev, matrix.Evidence{Check: check, Target: w.Workload.String(), OK: w.OK, Detail: fmt.Sprintf("%d/%d ready %s", w.Ready, w.Desired, w.Problem)})
		for _, p := range w.Pods {
			ev = append(ev, matrix.Evidence{Check: check, Source: p.Node, Target: p.Name, OK: false, Detail: p.String()})
		}
	}
	return ev
}

// since is the time from t in milliseconds, as phases record it.
func since(t time.Time) float64 { return float64(time.Since(t)) / float64(time.Millisecond) }
