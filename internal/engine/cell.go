package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/cnimatrix/cnimatrix/internal/archaudit"
	"github.com/cnimatrix/cnimatrix/internal/checks"
	"github.com/cnimatrix/cnimatrix/internal/cluster"
	"github.com/cnimatrix/cnimatrix/internal/diagnose"
	"github.com/cnimatrix/cnimatrix/internal/install"
	"github.com/cnimatrix/cnimatrix/internal/logx"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
	"github.com/cnimatrix/cnimatrix/internal/uninstall"
	"github.com/cnimatrix/cnimatrix/qemu"
)

// cellRun accumulates one cell's phases.
type cellRun struct {
	log    *logx.Logger
	result *matrix.Result
	audit  *archaudit.Report // the preflight's, saved with the artifacts
	// collected: the artifacts were saved (an upgrade's failed install and
	// the cell's end would both ask).
	collected bool
	// client reaches the cell's cluster once it has one; applied holds
	// what the cell applied, for an uninstall when the cluster is reused.
	client  kubernetes.Interface
	applied [][]*unstructured.Unstructured
}

// phase runs fn as a named phase and records it. A non-nil error ends the
// phase as fail, or infra-error when infra is set.
func (r *cellRun) phase(name string, infra bool, fn func() ([]matrix.Evidence, error)) error {
	start := time.Now()
	done := r.log.Phase(name)
	ev, err := fn()
	done(err)
	p := matrix.Phase{Name: name, Outcome: matrix.Pass, Start: start, DurationMS: since(start), Evidence: ev, Infra: infra}
	if err != nil {
		p.Error = err.Error()
		p.Outcome = matrix.Fail
		if infra {
			p.Outcome = matrix.InfraError
		}
	}
	r.result.Phases = append(r.result.Phases, p)
	return err
}

func (r *cellRun) skip(name, why string) {
	r.result.Phases = append(r.result.Phases, matrix.Phase{Name: name, Outcome: matrix.Skipped, Start: time.Now(), Error: why})
}

// RunCell runs one cell end to end and returns its result; it never panics
// on a cell failure: every failure is recorded with its phase and evidence.
func (e *Engine) RunCell(ctx context.Context, s *scenario.Scenario, cell matrix.Cell) (res matrix.Result) {
	log := e.log.With(cell.ID())
	res = matrix.Result{Cell: cell, ID: cell.ID(), Outcome: matrix.Unknown, Start: time.Now().UTC(), Fidelity: matrix.FidelityNative, Images: s.CNI.Images, ManifestPin: s.CNI.Pins[cell.CNIVersion]}
	run := &cellRun{log: log, result: &res}
	t0 := time.Now()
	if e.opts.ArtifactsDir != "" {
		// A folder left by an earlier run of this cell would be mistaken for this run's.
		_ = os.RemoveAll(filepath.Join(e.opts.ArtifactsDir, cell.ID()))
	}
	defer func() {
		res.DurationMS = since(t0)
		res.Outcome, res.Reason = verdict(res)
		if res.Outcome != matrix.Pass && res.Outcome != matrix.Skipped {
			res.RootCause = diagnose.RootCause(res)
		}
		log.Infof("cell %s: %s %s", cell.ID(), res.Outcome, res.RootCause)
	}()

	prov, err := e.provider(cell.Provider)
	if err != nil {
		res.Outcome, res.Reason = matrix.Skipped, err.Error()
		run.skip("cluster", res.Reason)
		return res
	}
	// A cell its Kubernetes cannot run: skipped with the reason, its
	// images audited, no cluster (skip.go).
	if sk := s.SkipFor(cell); sk != nil {
		e.skipCell(ctx, run, cell, sk)
		return res
	}

	// images: cached builds; cheap when Prepare ran.
	var nodeImage string
	var preload map[string]v1.ImageIndex
	if err := run.phase("images", true, func() ([]matrix.Evidence, error) {
		ref, err := e.NodeImage(ctx, cell.Kubernetes, controlPlaneArch(cell))
		if err != nil {
			return nil, err
		}
		nodeImage = ref
		if err := e.PushImages(ctx, s); err != nil {
			return nil, err
		}
		if err := e.pushFixtures(ctx, s); err != nil {
			return nil, err
		}
		if cell.Provider != "qemu" {
			return nil, nil
		}
		if preload, err = e.cellImages(ctx, s); err != nil {
			return nil, err
		}
		disk, err := qemu.BuildDisk(ctx, e.cache, cell.Kubernetes, qemu.DiskOptions{Preload: preload})
		if err != nil {
			return nil, err
		}
		return []matrix.Evidence{{Check: "images", Target: disk.Image, OK: true,
			Detail: fmt.Sprintf("%s node disk: kernel %s, Kubernetes %s, preloaded %s", qemu.Arch, disk.KernelVersion, disk.KubeVersion, strings.Join(disk.Images, ", "))}}, nil
	}); err != nil {
		return res
	}

	// preflight: the audit of the cell's images for its arch, before any
	// cluster exists.
	if mode := e.opts.Preflight; mode != PreflightOff {
		if mode == "" {
			mode = PreflightWarn
		}
		if err := run.phase(diagnose.PreflightPhase, false, func() ([]matrix.Evidence, error) {
			ev, rep, err := e.preflight(ctx, s, cell, mode)
			run.audit = rep
			if rep != nil && !rep.OK() {
				log.Infof("preflight (%s): %s", mode, rep.Summary())
			}
			return ev, err
		}); err != nil {
			e.saveAudit(run)
			return res
		}
	}

	ef := &earlyFacts{}
	// cluster: a new one, or with reuse one a cell before left clean.
	name := e.ClusterName(cell)
	workDir := e.cellWorkDir(cell)
	reuse := e.reuses(s)
	key := poolKey(s, cell)
	var pool *pooled
	wanted := func() bool { return false }
	if reuse {
		wanted = e.startReuse(key)
		pool = e.takePooled(key)
	}
	var cl *cluster.Cluster
	if pool != nil {
		cl, workDir, name = pool.cl, pool.workDir, pool.cl.Name
		_ = run.phase("cluster", true, func() ([]matrix.Evidence, error) { return reusedEvidence(pool), nil })
	} else {
		spec := cluster.Spec{
			Name: name, KubernetesVersion: cell.Kubernetes, NodeImage: nodeImage,
			PodSubnet: s.PodSubnet, ServiceSubnet: s.ServiceSub, Network: e.network, WorkDir: workDir,
			Mirror:  &cluster.Mirror{Endpoint: "http://" + e.registry.Addr(), Upstreams: Upstreams},
			Preload: preload,
		}
		spec.OnBoot = ef.onBoot(ctx)
		spec.Nodes = append(spec.Nodes, cluster.NodeSpec{Role: cluster.ControlPlane, Arch: controlPlaneArch(cell)})
		for i := 1; i < s.Nodes; i++ {
			spec.Nodes = append(spec.Nodes, cluster.NodeSpec{Role: cluster.Worker, Arch: cell.Arch})
		}
		if err := run.phase("cluster", true, func() ([]matrix.Evidence, error) {
			if err := os.MkdirAll(workDir, 0o755); err != nil {
				return nil, err
			}
			cctx, cancel := context.WithTimeout(ctx, s.Timeouts.Cluster)
			defer cancel()
			var err error
			cl, err = prov.Create(cctx, spec)
			if err != nil {
				return nil, err
			}
			return clusterEvidence(cl), nil
		}); err != nil {
			return res
		}
	}
	res.ClusterName = name
	// pool is the cluster's place in the reuse pool, nil when it is not
	// reused: decided when the cell ends, since a new cluster joins the
	// pool only once its baseline is read.
	defer func() {
		if pool == nil {
			e.teardown(ctx, run, prov, cl, workDir)
			return
		}
		pool.cells++
		e.release(ctx, run, key, pool, run.client, appliedObjects(run.applied...), operatorNamespaces(s), wanted())
	}()

	// Emulated nodes are slower at everything: scale the waits by the
	// measured slowdown instead of by numbers tuned by hand.
	timeouts := s.Timeouts
	if cl.Emulated {
		res.Fidelity = matrix.FidelityVMEmulated
		f := waitScale(cl.Slowdown)
		timeouts.CNIReady = time.Duration(float64(timeouts.CNIReady) * f)
		timeouts.Checks = time.Duration(float64(timeouts.Checks) * f)
		log.Infof("emulated nodes: CPU slowdown %.1fx, waits scaled by %.1f (cni-ready %s, checks %s)", cl.Slowdown, f, timeouts.CNIReady, timeouts.Checks)
	}

	cfg, err := cl.RESTConfig()
	if err == nil {
		err = os.WriteFile(filepath.Join(workDir, "kubeconfig"), cl.Kubeconfig, 0o600)
	}
	if err != nil {
		_ = run.phase("cluster-access", true, func() ([]matrix.Evidence, error) { return nil, err })
		return res
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		_ = run.phase("cluster-access", true, func() ([]matrix.Evidence, error) { return nil, err })
		return res
	}
	run.client = client
	if reuse && pool == nil {
		// Without a baseline an uninstall could not tell what the CNI left:
		// the cell runs on, and its cluster is deleted after it.
		_ = run.phase("baseline", true, func() ([]matrix.Evidence, error) {
			bctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
			defer cancel()
			b, err := uninstall.TakeBaseline(bctx, client, cl.Nodes)
			if err != nil {
				return nil, err
			}
			pool = &pooled{cl: cl, prov: prov, workDir: workDir, first: cell.ID(), baseline: b}
			return baselineEvidence(b), nil
		})
	}

	if err := e.kernelFacts(ctx, run, cl, s, s.CNI.Manifests[cell.CNIVersion], ef); err != nil {
		e.collect(ctx, run, cl, client)
		return res
	}

	// CNI install and readiness.
	if err := e.installCNI(ctx, run, cfg, client, cl, s, s.CNI.Manifests[cell.CNIVersion], timeouts.CNIReady, ""); err != nil {
		return res
	}

	// Checks.
	env := e.checksEnv(client, cfg, cl, s, timeouts, log)
	env.Arch, env.CNIWorkloads = cell.Arch, cniWorkloads(run.applied, s)
	if failed := e.runChecks(ctx, run, env, "", cniChecks(s, s.CNI.Manifests[cell.CNIVersion]), timeouts.Checks); failed {
		e.collect(ctx, run, cl, client)
		return res
	}
	if cell.UpgradeTo != "" {
		if !e.upgrade(ctx, run, cfg, client, cl, s, env, timeouts) {
			e.collect(ctx, run, cl, client)
			return res
		}
	}
	if sk := e.soakFor(s); sk.Duration > 0 {
		if err := e.soak(ctx, run, env, sk); err != nil {
			e.collect(ctx, run, cl, client)
		}
	}
	return res
}

// installCNI applies the manifest at path and waits until its workloads are
// ready, as the phases "cni-install" and "cni-ready" with prefix before
// their names (an upgrade's second install says so).
func (e *Engine) installCNI(ctx context.Context, run *cellRun, cfg *rest.Config, client kubernetes.Interface, cl *cluster.Cluster, s *scenario.Scenario, path string, timeout time.Duration, prefix string) error {
	log := run.log
	var objs []*unstructured.Unstructured
	if err := run.phase(prefix+"cni-install", false, func() ([]matrix.Evidence, error) {
		var n int
		var err error
		if objs, n, err = configuredManifest(path, s); err != nil {
			return nil, err
		}
		if n > 0 {
			log.Infof("image overrides: replaced %d container images", n)
		}
		var pinEv []matrix.Evidence
		if mixedCluster(run.result.Cell) {
			pinned, err := pinToArch(objs, run.result.Arch)
			if err != nil {
				return nil, err
			}
			for _, w := range pinned {
				pinEv = append(pinEv, matrix.Evidence{Check: prefix + "cni-install", Target: w, OK: true,
					Detail: fmt.Sprintf("pinned to %s=%s by cnimatrix: the control plane is %s, and the cell asks about %s", archLabel, run.result.Arch, controlPlaneArch(run.result.Cell), run.result.Arch)})
			}
		}
		run.applied = append(run.applied, objs)
		ictx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return append([]matrix.Evidence{{Check: prefix + "cni-install", Target: path, OK: true, Detail: fmt.Sprintf("%d objects applied", len(objs))}}, pinEv...),
			install.Apply(ictx, cfg, objs, install.ApplyOptions{FieldManager: "cnimatrix", Log: log})
	}); err != nil {
		return err
	}
	if err := run.phase(prefix+"cni-ready", false, func() ([]matrix.Evidence, error) {
		wctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		err := install.WaitReady(wctx, cfg, objs, install.ApplyOptions{FieldManager: "cnimatrix", Log: log})
		var nr *install.NotReadyError
		if errors.As(err, &nr) {
			return evidenceFromNotReady(nr), err
		}
		if err != nil {
			return nil, err
		}
		if operatorInstall(s) {
			if err := e.waitOperator(wctx, cfg, client, log); err != nil {
				return operatorEvidence(err), err
			}
		}
		return vmReadyEvidence(ctx, client, cl), nil
	}); err != nil {
		e.collect(ctx, run, cl, client)
		return err
	}
	return nil
}

func (e *Engine) checksEnv(client kubernetes.Interface, cfg *rest.Config, cl *cluster.Cluster, s *scenario.Scenario, timeouts scenario.Timeouts, log *logx.Logger) *checks.Env {
	return &checks.Env{
		Client: client, Config: cfg, Nodes: cl.Nodes, Namespace: checks.DefaultNamespace,
		NginxImage: NginxImage, ProbeImage: ProbeImage,
		CNINamespace: s.CNI.Namespace, CNISelector: s.CNI.Selector,
		Timeout: timeouts.Checks, Log: log, TargetPort: s.Checks.ServiceTargetPort,
		// The cluster is deleted after the cell (or kept for debugging with
		// its workloads): waiting for the namespace to go costs ~15 s for nothing.
		KeepNamespace: true,
	}
}

// runChecks runs list as phases "check:<name>" (prefix before them) and
// reports whether one failed.
func (e *Engine) runChecks(ctx context.Context, run *cellRun, env *checks.Env, prefix string, list []checks.Check, timeout time.Duration) (failed bool) {
	cctx, cancel := context.WithTimeout(ctx, 2*timeout)
	defer cancel()
	for _, cr := range checks.Run(cctx, env, list) {
		p := matrix.Phase{Name: prefix + "check:" + cr.Name, Outcome: matrix.Pass, Start: time.Now().Add(-cr.Duration), DurationMS: float64(cr.Duration) / float64(time.Millisecond)}
		p.Evidence = matrixEvidence(cr.Evidence)
		if !cr.OK {
			p.Outcome, p.Error, failed = matrix.Fail, cr.Err, true
		}
		run.result.Phases = append(run.result.Phases, p)
	}
	return failed
}

func matrixEvidence(in []checks.Evidence) []matrix.Evidence {
	var out []matrix.Evidence
	for _, ev := range in {
		out = append(out, matrix.Evidence{Check: ev.Check, Source: ev.Source, Target: ev.Target, OK: ev.OK, Detail: ev.Detail, LatencyMS: float64(ev.Latency) / float64(time.Millisecond), Attempts: ev.Attempts})
	}
	return out
}

func (e *Engine) teardown(ctx context.Context, run *cellRun, prov cluster.Provider, cl *cluster.Cluster, workDir string) {
	if e.opts.Keep {
		run.skip("teardown", "kept (--keep)")
		run.log.Infof("kept cluster %s: export KUBECONFIG=%s; kubectl get pods -A   (delete: kind delete cluster --name %s, or cnimatrix gc)",
			cl.Name, filepath.Join(workDir, "kubeconfig"), cl.Name)
		return
	}
	_ = run.phase("teardown", true, func() ([]matrix.Evidence, error) {
		return nil, deleteCluster(ctx, prov, cl.Name, workDir)
	})
}

// deleteCluster deletes a cluster and, once it is gone, its work folder.
// It runs on a context of its own: a cell or run that was interrupted must
// still not leave its cluster behind.
func deleteCluster(ctx context.Context, prov cluster.Provider, name, workDir string) error {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Minute)
	defer cancel()
	if err := prov.Delete(dctx, name); err != nil {
		return err
	}
	_ = os.RemoveAll(workDir)
	return nil
}

// verdict derives the cell's outcome from its phases: pass only when every
// phase ran and passed; an infrastructure failure is infra-error.
func verdict(r matrix.Result) (matrix.Outcome, string) {
	if r.Outcome == matrix.Skipped {
		return matrix.Skipped, r.Reason
	}
	if len(r.Phases) == 0 {
		return matrix.Unknown, "no phase ran"
	}
	sawChecks := false
	for _, p := range r.Phases {
		switch p.Outcome {
		case matrix.InfraError:
			if p.Name == "teardown" || p.Name == PhaseUninstall || p.Name == "baseline" {
				// The verdict stands; the phase shows what is left (a
				// cluster that was not clean is deleted, not reused).
				continue
			}
			return matrix.InfraError, fmt.Sprintf("%s: %s", p.Name, p.Error)
		case matrix.Fail:
			return matrix.Fail, fmt.Sprintf("%s: %s", p.Name, firstLine(p.Error))
		case matrix.Unknown:
			return matrix.Unknown, fmt.Sprintf("%s: no result", p.Name)
		}
		if len(p.Name) > 6 && p.Name[:6] == "check:" {
			sawChecks = true
		}
	}
	if !sawChecks {
		return matrix.Unknown, "the checks did not run"
	}
	return matrix.Pass, ""
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}

// evidenceFromNotReady turns the install wait's report into evidence lines:
// one per workload and one per pod that is not ready.
func evidenceFromNotReady(nr *install.NotReadyError) []matrix.Evidence {
	var ev []matrix.Evidence
	for _, w := range nr.Workloads {
		ev = append(ev, matrix.Evidence{Check: "cni-ready", Target: w.Workload.String(), OK: w.OK, Detail: fmt.Sprintf("%d/%d ready %s", w.Ready, w.Desired, w.Problem)})
		for _, p := range w.Pods {
			ev = append(ev, matrix.Evidence{Check: "cni-ready", Source: p.Node, Target: p.Name, OK: false, Detail: p.String()})
		}
	}
	return ev
}
