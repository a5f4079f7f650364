package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cnimatrix/cnimatrix/internal/archaudit"
	"github.com/cnimatrix/cnimatrix/internal/checks"
	"github.com/cnimatrix/cnimatrix/internal/cluster"
	"github.com/cnimatrix/cnimatrix/internal/diagnose"
	"github.com/cnimatrix/cnimatrix/internal/logx"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/redact"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

// A cell's journey is the list below, run in order by RunCell; each step is
// one file (step_*.go). A step that fails ends the journey, unless it says
// the cell can go on without it (KeepGoing); the cell's end (finish.go)
// then saves the artifacts once and tears down, releases or keeps the
// cluster once, whatever step the journey stopped at.
//
// Adding a step is a file with a Step value and one line here.
func (e *Engine) pipeline() []Step {
	return []Step{
		stepImages,      // node image, harness and CNI images, VM disk (cached)
		stepPreflight,   // the cell's images audited for its arch, before a cluster
		stepCluster,     // a new cluster, or a reused one left clean
		stepAccess,      // kubeconfig and clients; waits scaled for emulated nodes
		stepBaseline,    // a reused cluster's nodes before any CNI
		stepKernelFacts, // what each node's kernel offers the CNI's tunnel
		stepDetect,      // an existing cluster's own CNI found (installed mode)
		stepInstall,     // the configured manifest applied
		stepReady,       // the CNI's workloads ready
		stepChecks,      // the checks, one phase each
		stepUpgrade,     // upgrade-path cells: TO applied in place, checks again
		stepSoak,        // nginx probed across nodes for a while
	}
}

// Step is one stage of a cell's journey.
type Step struct {
	// Name is the phase the step records (a step that records its own
	// phases, like the checks, names none of them with it).
	Name string
	// Infra: the step's failure is the harness's or the host's
	// (infra-error), not the CNI's.
	Infra bool
	// KeepGoing: a failure is recorded and the journey goes on (a reused
	// cluster's baseline that could not be read: the cluster is deleted
	// after the cell instead of reused).
	KeepGoing bool
	// Applies, when set, says whether the cell has anything for the step
	// to do (an upgrade, a soak); a step that does not apply records
	// nothing.
	Applies func(c *cellRun) bool
	Run     func(ctx context.Context, c *cellRun) StepResult
}

// StepResult is what a step returns.
type StepResult struct {
	Evidence []matrix.Evidence
	// Err is why the step failed; nil when it passed.
	Err error
	// Cause is the root cause when the step knows it (a diagnose class);
	// diagnosis reads it before any text.
	Cause string
	// Infra: this failure is the harness's or the host's, though the
	// step's failures usually are not (a node that never registered).
	Infra bool
	// Phases are recorded instead of one phase named after the step, by
	// steps that run several things (a phase per check). Failed says
	// whether one of them failed.
	Phases []matrix.Phase
	Failed bool
	// Recorded: the step recorded its phases itself, as they happened
	// (cellRun.phase), and Failed says whether one failed.
	Recorded bool
	// Skip is why the cell cannot answer its question here (an existing
	// cluster with no node of its arch): the cell is skipped with it.
	Skip string
}

// failed reports whether the step's result ends the journey.
func (r StepResult) failed() bool { return r.Err != nil || r.Failed || r.Skip != "" }

// cellRun is one cell on its way through the pipeline: its plan, what the
// steps made so far, and its result.
type cellRun struct {
	e      *Engine
	plan   *CellPlan
	log    *logx.Logger
	result *matrix.Result

	// set by the steps, in pipeline order
	nodeImage string
	preload   map[string]v1.ImageIndex
	audit     *archaudit.Report // the preflight's, saved with the artifacts
	facts     *earlyFacts
	prov      cluster.Provider
	cl        *cluster.Cluster
	workDir   string
	pool      *pooled     // the cluster's place in the reuse pool; nil when not reused
	wanted    func() bool // a later cell wants the reused cluster
	cfg       *rest.Config
	client    kubernetes.Interface
	timeouts  scenario.Timeouts // the plan's, scaled once the nodes' slowdown is known
	applied   [][]*unstructured.Unstructured
	env       *checks.Env
	checksRan bool
	collected bool
}

// RunCell runs one cell end to end and returns its result; it never panics
// on a cell failure: every failure is recorded with its step and evidence.
func (e *Engine) RunCell(ctx context.Context, s *scenario.Scenario, cell matrix.Cell) matrix.Result {
	t0 := time.Now()
	plan := e.planCell(s, cell)
	c := &cellRun{e: e, plan: plan, log: e.log.With(cell.ID()), timeouts: plan.Timeouts, wanted: func() bool { return false }}
	c.result = &matrix.Result{Cell: cell, ID: cell.ID(), Outcome: matrix.Unknown, Start: t0.UTC(), Fidelity: matrix.FidelityNative,
		Images: plan.ImagesFrom, ManifestPin: plan.Pin}
	if e.opts.ArtifactsDir != "" {
		keepEarlierArtifacts(c.log, filepath.Join(e.opts.ArtifactsDir, cell.ID()))
	}
	switch {
	case plan.provider == nil:
		c.result.Outcome, c.result.Reason = matrix.Skipped, plan.ProviderErr
		c.record(matrix.Phase{Name: "cluster", Outcome: matrix.Skipped, Start: time.Now(), Error: plan.ProviderErr})
	case plan.skip != nil:
		// A cell its Kubernetes cannot run: skipped with the reason, its
		// images audited, no cluster (skip.go).
		e.skipCell(ctx, c, plan.skip)
	default:
		for _, st := range e.pipeline() {
			if !c.run(ctx, st) {
				break
			}
		}
		c.finish(ctx)
	}
	c.result.ImageSources = e.imageSources(plan)
	res := *c.result
	res.DurationMS = since(t0)
	res.Outcome, res.Reason = verdict(res, c.checksRan)
	if res.Outcome != matrix.Pass && res.Outcome != matrix.Skipped {
		res.RootCause = diagnose.RootCause(res)
	}
	if err := ctx.Err(); err != nil && res.Outcome != matrix.Skipped && res.Outcome != matrix.Pass {
		// Interrupted (Ctrl-C, SIGTERM, a spec's timeout): whatever failed
		// after that failed because of it, so the cell has no verdict. (A
		// cell that had passed every check before keeps its pass.)
		res.Outcome, res.RootCause = matrix.Unknown, ""
		res.Reason = fmt.Sprintf("interrupted (%v) during %s", context.Cause(ctx), lastPhase(res))
	}
	// Evidence quotes pod logs and command output, and the result goes to
	// matrix files, JUnit and CI logs: no secret may travel with it.
	redact.Strings(&res)
	c.log.Infof("cell %s: %s %s", cell.ID(), res.Outcome, res.RootCause)
	return res
}

// run runs one step and records what it returned; false ends the journey.
func (c *cellRun) run(ctx context.Context, st Step) bool {
	if st.Applies != nil && !st.Applies(c) {
		return true
	}
	start := time.Now()
	done := c.log.Phase(st.Name)
	r := st.Run(ctx, c)
	err := r.Err
	if err == nil && r.Failed {
		err = errors.New("failed")
	}
	done(err)
	switch {
	case r.Recorded:
	case r.Phases != nil:
		for _, p := range r.Phases {
			c.record(p)
		}
	default:
		p := matrix.Phase{Name: st.Name, Step: st.Name, Outcome: matrix.Pass, Start: start, DurationMS: since(start), Evidence: r.Evidence, Infra: st.Infra}
		if r.Skip != "" {
			p.Outcome, p.Error = matrix.Skipped, r.Skip
			c.result.Outcome, c.result.Reason = matrix.Skipped, r.Skip
		}
		if r.Err != nil {
			p.Error, p.Cause, p.Outcome = r.Err.Error(), r.Cause, matrix.Fail
			if st.Infra || r.Infra {
				p.Infra = true
				p.Outcome = matrix.InfraError
			}
		}
		c.record(p)
	}
	return !r.failed() || (st.KeepGoing && r.Skip == "")
}

func (c *cellRun) record(p matrix.Phase) { c.result.Phases = append(c.result.Phases, p) }

// phase runs fn as a phase of its own inside a step (an upgrade's second
// install) and records it; it returns fn's error.
func (c *cellRun) phase(name, step string, fn func() ([]matrix.Evidence, error)) error {
	start := time.Now()
	done := c.log.Phase(name)
	ev, err := fn()
	done(err)
	p := matrix.Phase{Name: name, Step: step, Outcome: matrix.Pass, Start: start, DurationMS: since(start), Evidence: ev}
	if err != nil {
		p.Error, p.Outcome = err.Error(), matrix.Fail
	}
	c.record(p)
	return err
}

// verdict derives the cell's outcome from its phases: pass only when every
// phase ran and passed and the checks ran; an infrastructure failure is
// infra-error; a check that was skipped (it could not run) leaves the cell
// unknown, never pass.
func verdict(r matrix.Result, checksRan bool) (matrix.Outcome, string) {
	if r.Outcome == matrix.Skipped {
		return matrix.Skipped, r.Reason
	}
	if len(r.Phases) == 0 {
		return matrix.Unknown, "no phase ran"
	}
	skipped := ""
	for _, p := range r.Phases {
		switch p.Outcome {
		case matrix.InfraError:
			if besideVerdict[p.Step] {
				// The verdict stands; the phase shows what is left (a
				// cluster that was not clean is deleted, not reused).
				continue
			}
			return matrix.InfraError, fmt.Sprintf("%s: %s", p.Name, p.Error)
		case matrix.Fail:
			return matrix.Fail, fmt.Sprintf("%s: %s", p.Name, firstLine(p.Error))
		case matrix.Unknown:
			return matrix.Unknown, fmt.Sprintf("%s: no result", p.Name)
		case matrix.Skipped:
			if p.Step == StepChecks && skipped == "" {
				skipped = fmt.Sprintf("%s skipped: %s", p.Name, p.Error)
			}
		}
	}
	if !checksRan {
		return matrix.Unknown, "the checks did not run"
	}
	if skipped != "" {
		return matrix.Unknown, skipped
	}
	return matrix.Pass, ""
}

// besideVerdict are the steps whose failures say what is left behind or
// what could not be kept, not whether the CNI works.
var besideVerdict = map[string]bool{"teardown": true, PhaseUninstall: true, "baseline": true, "artifacts": true}

// lastPhase names the phase a cell was in when it ended, the teardown and
// artifacts that follow an end aside.
func lastPhase(r matrix.Result) string {
	for i := len(r.Phases) - 1; i >= 0; i-- {
		if !besideVerdict[r.Phases[i].Step] && !besideVerdict[r.Phases[i].Name] {
			return r.Phases[i].Name
		}
	}
	return "its start"
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}

// keepEarlierArtifacts moves a folder an earlier run left for this cell
// aside (dir.<its time>), so it is not mistaken for this run's and not
// lost: it may be the only evidence of a failure.
func keepEarlierArtifacts(log *logx.Logger, dir string) {
	fi, err := os.Stat(dir)
	if err != nil {
		return
	}
	aside := dir + "." + fi.ModTime().UTC().Format("20060102T150405Z")
	if err := os.Rename(dir, aside); err != nil {
		log.Infof("artifacts of an earlier run in %s could not be moved aside (%v): this run's are written over them", dir, err)
		return
	}
	log.Infof("artifacts of an earlier run of this cell kept in %s", aside)
}
