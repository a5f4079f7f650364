// Package engine runs matrix cells: one engine behind both shells (the Ginkgo
// suite in e2e/ and `cnimatrix run`). A run owns a Docker network and a local
// registry shared by its cells; each cell creates its own cluster, installs
// the CNI, runs the checks and deletes the cluster unless asked to keep it.
package engine

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
	kindprov "github.com/cnimatrix/cnimatrix/internal/cluster/kind"
	"github.com/cnimatrix/cnimatrix/internal/images"
	"github.com/cnimatrix/cnimatrix/internal/logx"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/qemu"
)

// Upstreams are the registries the local registry stands in for.
var Upstreams = []string{"docker.io", "quay.io", "registry.k8s.io", "ghcr.io"}

// Workload images the checks deploy (built by images.WorkloadImages).
const (
	NginxImage = images.NginxImage
	ProbeImage = images.ProbeImage
)

// Options configure an Engine.
type Options struct {
	Log      *logx.Logger
	CacheDir string
	// Keep keeps every cell's cluster (and the run's network) for debugging.
	Keep bool
	// WorkDir holds per-cluster files (kubeconfigs, registry config).
	WorkDir string
	// ArtifactsDir receives one folder per cell that did not pass.
	ArtifactsDir string
	// Preflight says what a cell does with the audit of its images for its
	// arch before creating a cluster; "" is PreflightWarn.
	Preflight Preflight
	// Soak, when > 0, keeps probing nginx across nodes for that long after
	// a cell's checks passed, every SoakInterval (default 1s); the cell
	// fails when availability is below SoakMinAvailability percent
	// (default 100).
	Soak                time.Duration
	SoakInterval        time.Duration
	SoakMinAvailability float64
	// ReuseClusters runs cells that need the same cluster on one cluster,
	// one after another, uninstalling the CNI in between; a cluster that
	// does not come back to its baseline is deleted. Ignored with Keep.
	ReuseClusters bool
	// PullThrough, when not empty, makes the run's registry fetch an image
	// it holds none of from the upstream of its host (images.Upstreams),
	// instead of answering not-found: released images for a user online,
	// or a company mirror. Layers are kept in <cache>/pulled.
	PullThrough images.Upstreams
	// UpstreamNodeImages makes kind nodes boot kind's published node image
	// (kindest/node:<version>, linux/<control plane's arch>) fetched
	// through the pull-through's docker.io upstream, instead of building
	// Kubernetes here; a version the upstream lacks is built as usual.
	// Needs PullThrough with docker.io.
	UpstreamNodeImages bool
	// ImportedDir is the store of imported images the run pushes into its
	// registry (default <cache>/imported, where `cnimatrix images import`
	// puts them).
	ImportedDir string
}

// Engine is one run.
type Engine struct {
	opts     Options
	log      *logx.Logger
	cache    *images.Cache
	runID    string
	network  string
	gateway  string
	registry *images.Registry
	kind     *kindprov.Provider
	qemu     *qemu.Provider

	stopRegistry context.CancelFunc
	releaseRun   func()

	// builds runs each shared build once, whichever cells ask for it at
	// the same time; two cells needing different images build in parallel.
	builds singleflight.Group

	mu         sync.Mutex                    // guards the maps below, never held across a build
	nodeImages map[string]string             // k8s version/arch -> node image
	nodeFrom   map[string]matrix.ImageSource // node image -> where it came from
	pushed     map[string]bool               // image refs in the registry
	pool       map[string][]*pooled
	remaining  map[string]int // pool key -> planned cells not started yet
	imported   []string       // images import pushed into the registry
}

// Start checks the host, creates the run's network and starts the registry.
func Start(ctx context.Context, opts Options) (*Engine, error) {
	if opts.Log == nil {
		opts.Log = logx.Discard()
	}
	if opts.CacheDir == "" {
		opts.CacheDir = images.DefaultCacheDir()
	}
	if opts.WorkDir == "" {
		opts.WorkDir = filepath.Join(os.TempDir(), "cnimatrix")
	}
	if opts.UpstreamNodeImages && opts.PullThrough["docker.io"] == "" {
		return nil, errors.New("upstream node images come through docker.io's pull-through: PullThrough has no docker.io upstream")
	}
	if err := kindprov.CheckDocker(ctx); err != nil {
		return nil, &HostError{Err: err}
	}
	routeClientGoLogs(opts.Log)
	cache, err := images.NewCache(opts.CacheDir, opts.Log)
	if err != nil {
		return nil, err
	}
	var imported *images.Store
	if opts.ImportedDir != "" {
		imported, err = images.OpenStore(opts.ImportedDir)
	} else {
		imported, err = cache.ImportedStore()
	}
	if err != nil {
		return nil, &HostError{Err: err}
	}
	e := &Engine{opts: opts, log: opts.Log, cache: cache, runID: newRunID(), nodeImages: map[string]string{}, nodeFrom: map[string]matrix.ImageSource{}, pushed: map[string]bool{}, pool: map[string][]*pooled{}, remaining: map[string]int{}}
	// While the run lives, `cnimatrix gc` leaves what it makes alone.
	if e.releaseRun, err = cluster.HoldRun(e.runID); err != nil {
		return nil, &HostError{Err: err}
	}
	e.kind = kindprov.New(opts.Log)
	e.qemu = qemu.NewProvider(opts.Log, cache, e.kind)
	e.network = cluster.NamePrefix + "net-" + e.runID
	done := e.log.Phase("network " + e.network)
	gw, _, err := kindprov.EnsureNetwork(ctx, e.network)
	done(err)
	if err != nil {
		e.releaseRun()
		return nil, &HostError{Err: fmt.Errorf("create docker network: %w", err)}
	}
	e.gateway = gw
	// The registry serves the nodes for the whole run, not for the caller's
	// context (a Ginkgo BeforeSuite's ends when the node does): Close stops it.
	regCtx, stopReg := context.WithCancel(context.WithoutCancel(ctx))
	e.stopRegistry = stopReg
	regOpts := []images.RegistryOption{images.RegistryTempName(cluster.RegistryTempName(e.runID)), images.RegistryLinkStore(imported)}
	if len(opts.PullThrough) > 0 {
		regOpts = append(regOpts, images.RegistryPullThrough(opts.PullThrough, filepath.Join(opts.CacheDir, "pulled")))
	}
	reg, err := images.StartRegistry(regCtx, gw+":0", opts.Log, regOpts...)
	if err != nil {
		stopReg()
		_ = kindprov.DeleteNetwork(context.WithoutCancel(ctx), e.network)
		e.releaseRun()
		return nil, &HostError{Err: fmt.Errorf("start local registry: %w", err)}
	}
	e.registry = reg
	e.log.Infof("local registry at %s (mirror for %s)", reg.Addr(), strings.Join(Upstreams, ", "))
	if len(opts.PullThrough) > 0 {
		e.log.Infof("pull-through: images the run does not build or import are fetched from %s", describeUpstreams(opts.PullThrough))
	}
	if err := e.pushImported(ctx, imported); err != nil {
		_ = e.Close(context.WithoutCancel(ctx))
		return nil, &HostError{Err: err}
	}
	return e, nil
}

// HostError is a problem with the host (no Docker engine, ...), not a cell.
type HostError struct{ Err error }

func (e *HostError) Error() string { return e.Err.Error() }
func (e *HostError) Unwrap() error { return e.Err }

// RunID names this run (clusters are cnimatrix-<cell>-<runID>).
func (e *Engine) RunID() string { return e.runID }

// Network is the Docker network the run's nodes join.
func (e *Engine) Network() string { return e.network }

// Close deletes the reused clusters still waiting for a cell, stops the
// registry and removes the run's network, unless kept.
func (e *Engine) Close(ctx context.Context) error {
	var errs []error
	if err := e.closePool(ctx); err != nil {
		errs = append(errs, err)
	}
	if e.registry != nil {
		errs = append(errs, e.registry.Close())
		e.stopRegistry()
	}
	if !e.opts.Keep {
		if err := kindprov.DeleteNetwork(ctx, e.network); err != nil {
			errs = append(errs, fmt.Errorf("delete network %s: %w", e.network, err))
		}
	}
	if e.releaseRun != nil {
		e.releaseRun()
	}
	return errors.Join(errs...)
}

func newRunID() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ClusterName is the name of a cell's cluster in this run (kind limits names
// to what fits a hostname, so the cell ID is shortened to a hash).
func (e *Engine) ClusterName(c matrix.Cell) string {
	sum := sha256.Sum256([]byte(c.ID()))
	return cluster.NamePrefix + hex.EncodeToString(sum[:4]) + "-" + e.runID
}

func (e *Engine) cellWorkDir(c matrix.Cell) string {
	return filepath.Join(e.opts.WorkDir, e.ClusterName(c))
}

// providers are the run's cluster providers by the names scenarios use.
func (e *Engine) providers() []cluster.Provider { return []cluster.Provider{e.kind, e.qemu} }

// dryRunProviders are providers that only lay out nodes: a plan needs
// nothing else of them.
func dryRunProviders() []cluster.Provider {
	k := kindprov.New(nil)
	return []cluster.Provider{k, qemu.NewProvider(nil, nil, k)}
}

func providerByName(name string, provs []cluster.Provider) (cluster.Provider, error) {
	var names []string
	for _, p := range provs {
		if p.Name() == name {
			return p, nil
		}
		names = append(names, p.Name())
	}
	return nil, fmt.Errorf("unknown provider %q (known: %s)", name, strings.Join(names, ", "))
}
