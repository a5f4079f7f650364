// Package checks holds the readiness and connectivity checks run against a
// cluster once its CNI is installed. Checks are data: each is one file with a
// type that implements Check, and Default lists them in the order they run.
// Every check returns evidence (who probed what, what came back, how long it
// took, how many attempts) so a matrix cell explains itself.
package checks

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
	"github.com/cnimatrix/cnimatrix/internal/install"
	"github.com/cnimatrix/cnimatrix/internal/logx"
)

// Evidence is one observation: a probe from Source to Target, or the state
// of one object read from the API (Source "api").
type Evidence struct {
	Check, Source, Target string
	OK                    bool
	Detail                string // response body excerpt, state summary or error
	// Latency is the probe's own measure (curl's time_total, dig's query
	// time, the host's round trip); for API state, how long it took to
	// become ready.
	Latency time.Duration
	// Attempts: for a probe, the tries made (only transport failures are
	// retried); for a Service backend, the request on which it first
	// answered, or the requests made when it never did; for API state, polls.
	Attempts int
	// Harness marks a failure of the harness's own transport (the exec into
	// the probe pod, after its retries), not of the request the probe made:
	// it says nothing about the CNI.
	Harness bool
}

// Result is the outcome of one check.
type Result struct {
	Name string
	OK   bool
	Err  string // why it failed; "skipped: ..." when it could not run
	// Skip is why the check could not run (a dependency failed, the
	// cluster has one node); "" when it ran.
	Skip string
	// Cause is the failure's root cause when the check knows it (a
	// diagnose class, e.g. arch-not-exercised).
	Cause string
	// Infra: the check could not judge, every failure was the harness's
	// own (Evidence.Harness); the cell is infra-error, never fail.
	Infra    bool
	Evidence []Evidence
	// Start is when the check began (zero for one that did not run).
	Start    time.Time
	Duration time.Duration
}

// Skipped reports whether the check did not run because something it needs
// (a dependency, a second node) was missing.
func (r Result) Skipped() bool { return r.Skip != "" }

// skipped is a Result for a check that did not run, and why.
func skipped(name, why string, ev []Evidence) Result {
	return Result{Name: name, Skip: why, Err: skippedPrefix + why, Evidence: ev}
}

const skippedPrefix = "skipped: "

// Env is what checks run against.
type Env struct {
	Client kubernetes.Interface
	Config *rest.Config // for exec into pods
	Nodes  []cluster.Node
	// Namespace is the test namespace, created by Setup and deleted by Teardown.
	Namespace              string // default DefaultNamespace
	NginxImage, ProbeImage string
	// CNINamespace and CNISelector (a label selector; empty = all pods)
	// find the CNI's pods.
	CNINamespace, CNISelector string
	Timeout                   time.Duration // per wait; default 3m
	// ExecSlack is what one exec into a pod may take beyond the command's
	// own limit; default 30 s (emulated nodes need more).
	ExecSlack  time.Duration
	Log        *logx.Logger
	TargetPort int // Service targetPort; default 80 (tests set a wrong one)
	// KeepNamespace leaves the test namespace in place after Run, for
	// diagnosis of a failed run.
	KeepNamespace bool
	// Arch is the arch under test (kubernetes.io/arch), and CNIWorkloads
	// what the CNI's install runs: CNIWorkloadArch requires a Ready pod of
	// each on a node of that arch.
	Arch         string
	CNIWorkloads []install.Workload

	core rest.Interface // lazily built from Config, for exec
	// Owner is the run ID written on the namespace Setup creates
	// (cluster.OwnerAnnotation), so that gc leaves a live run's alone.
	Owner string

	created bool // Setup created the namespace, or found it provided
	// provided: the namespace is the user's (labelled ProvidedNamespace),
	// made for a kubeconfig with only namespaced rights in it: Teardown
	// deletes what the checks made in it, never the namespace.
	provided bool
}

// Check is one named check.
type Check interface {
	Name() string
	Run(ctx context.Context, env *Env) Result
}

// Dependent is a Check that needs other checks (by name) to have passed.
// Run skips it when one of them failed; a dependency not in the list run is
// not waited for.
type Dependent interface {
	DependsOn() []string
}

var (
	_ Dependent = CoreDNSReady{}
	_ Dependent = Workloads{}
	_ Dependent = NodeArch{}
	_ Dependent = PodToPodAcrossNodes{}
	_ Dependent = PodToClusterIP{}
	_ Dependent = PodToServiceDNS{}
	_ Dependent = HostToNodePort{}
)

// Names of the checks, for DependsOn and for scenarios that pick checks.
const (
	NameNodesReady          = "NodesReady"
	NameCNIPodsReady        = "CNIPodsReady"
	NameCoreDNSReady        = "CoreDNSReady"
	NameWorkloads           = "Workloads"
	NameNodeArch            = "NodeArch"
	NamePodToPodAcrossNodes = "PodToPodAcrossNodes"
	NamePodToClusterIP      = "PodToClusterIP"
	NamePodToServiceDNS     = "PodToServiceDNS"
	NameHostToNodePort      = "HostToNodePort"

	// nameSetup is the pseudo-check that creates the test namespace.
	nameSetup = "Setup"
)

// Default is the standard suite, in run order.
func Default() []Check {
	return []Check{
		NodesReady{},
		CNIPodsReady{},
		CoreDNSReady{},
		Workloads{},
		NodeArch{},
		PodToPodAcrossNodes{},
		PodToClusterIP{},
		PodToServiceDNS{},
		HostToNodePort{},
	}
}

// ByName returns the checks of Default with the given names, in Default's
// order, or an error naming the unknown ones.
func ByName(names []string) ([]Check, error) {
	var out []Check
	known := map[string]bool{}
	for _, c := range Default() {
		known[c.Name()] = true
		if slices.Contains(names, c.Name()) {
			out = append(out, c)
		}
	}
	var unknown []string
	for _, n := range names {
		if !known[n] {
			unknown = append(unknown, n)
		}
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("unknown checks %s (known: %s)", strings.Join(unknown, ", "), strings.Join(slices.Sorted(maps.Keys(known)), ", "))
	}
	return out, nil
}

// DefaultNamespace holds the checks' workloads unless Env.Namespace says
// otherwise.
const DefaultNamespace = "cnimatrix-checks"

func (e *Env) init() {
	if e.Namespace == "" {
		e.Namespace = DefaultNamespace
	}
	if e.Timeout <= 0 {
		e.Timeout = 3 * time.Minute
	}
	if e.Log == nil {
		e.Log = logx.Discard()
	}
	if e.TargetPort == 0 {
		e.TargetPort = 80
	}
}

// Run runs checks in order and returns one Result per check. A check whose
// dependency failed fails at once with "skipped: <dependency> failed". The
// test namespace is created before the first check that needs it and deleted
// at the end (unless env.KeepNamespace).
func Run(ctx context.Context, env *Env, checks []Check) []Result {
	env.init()
	results := make([]Result, 0, len(checks))
	failed := map[string]bool{}
	setupDone := false
	defer func() {
		if !env.created || env.KeepNamespace {
			return
		}
		// ctx may be over: teardown gets its own bounded context.
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), env.Timeout)
		defer cancel()
		end := env.Log.Phase("teardown namespace " + env.Namespace)
		end(Teardown(tctx, env))
	}()
	for _, c := range checks {
		name := c.Name()
		var deps []string
		if d, ok := c.(Dependent); ok {
			deps = d.DependsOn()
		}
		if slices.Contains(deps, nameSetup) && !setupDone {
			setupDone = true
			if err := Setup(ctx, env); err != nil {
				failed[nameSetup] = true
				env.Log.Infof("✗ setup: %v", err)
				results = append(results, Result{Name: nameSetup, Err: err.Error()})
			}
		}
		if dep := firstFailed(deps, failed); dep != "" {
			failed[name] = true
			results = append(results, skipped(name, dep+" failed", nil))
			env.Log.Infof("- %s %s%s failed", name, skippedPrefix, dep)
			continue
		}
		if err := ctx.Err(); err != nil {
			failed[name] = true
			results = append(results, skipped(name, err.Error(), nil))
			continue
		}
		end := env.Log.Phase("check " + name)
		t0 := time.Now()
		r := c.Run(ctx, env)
		r.Name, r.Start, r.Duration = name, t0, time.Since(t0)
		var rerr error
		if !r.OK {
			// A check that could not run is not a pass either: what
			// depends on it is skipped.
			failed[name] = true
			rerr = fmt.Errorf("%s", r.Err)
		}
		end(rerr)
		for _, ev := range r.Evidence {
			env.Log.Debugf("  %s", ev)
		}
		results = append(results, r)
	}
	return results
}

func firstFailed(deps []string, failed map[string]bool) string {
	for _, d := range deps {
		if failed[d] {
			return d
		}
	}
	return ""
}

// fail is a failed Result with its evidence.
func fail(ev []Evidence, format string, args ...any) Result {
	return Result{Err: fmt.Sprintf(format, args...), Evidence: ev}
}

// skip is a Result for a check that cannot apply to this cluster.
func skip(ev []Evidence, format string, args ...any) Result {
	return skipped("", fmt.Sprintf(format, args...), ev)
}

// summarize turns per-target evidence into a Result: OK when every piece is.
// Identical failures (the same target failing the same way on repeated
// requests) are said once with a count.
func summarize(ev []Evidence) Result {
	if len(ev) == 0 {
		return fail(ev, "no targets")
	}
	var order []string
	count := map[string]int{}
	failed, harness := 0, 0
	for _, e := range ev {
		if e.OK {
			continue
		}
		failed++
		if e.Harness {
			harness++
		}
		k := e.Target + ": " + e.Detail
		if count[k] == 0 {
			order = append(order, k)
		}
		count[k]++
	}
	if failed == 0 {
		return Result{OK: true, Evidence: ev}
	}
	for i, k := range order {
		if count[k] > 1 {
			order[i] = fmt.Sprintf("%s (x%d)", k, count[k])
		}
	}
	if harness == failed {
		r := fail(ev, "the harness could not reach its probe pods (%d/%d): %s", failed, len(ev), strings.Join(order, "; "))
		r.Infra = true
		return r
	}
	return fail(ev, "%d/%d failed: %s", failed, len(ev), strings.Join(order, "; "))
}
