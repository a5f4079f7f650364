package kind

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
	"github.com/cnimatrix/cnimatrix/internal/logx"
)

// GC deletes every cluster cnimatrix created (name prefix) and every Docker
// network carrying cnimatrix's label that no container uses any more. It is
// what a person runs after --keep, or after a run that was killed. What a
// run in progress made is left alone unless force is set.
func GC(ctx context.Context, log *logx.Logger, force bool) error {
	return gc(ctx, log, force, func(string) bool { return true })
}

// GCRun is GC for what run runID made only.
func GCRun(ctx context.Context, log *logx.Logger, runID string, force bool) error {
	return gc(ctx, log, force, func(name string) bool { return cluster.RunOf(name) == runID })
}

func gc(ctx context.Context, log *logx.Logger, force bool, mine func(name string) bool) error {
	p := New(log)
	all, err := p.List(ctx)
	if err != nil {
		return err
	}
	var names []string
	for _, n := range all {
		if mine(n) {
			names = append(names, n)
		}
	}
	var errs []error
	for _, n := range names {
		if skipLive(log, n, force) {
			continue
		}
		done := log.Phase("delete cluster " + n)
		err := p.Delete(ctx, n)
		done(err)
		errs = append(errs, err)
	}
	out, err := docker(ctx, "network", "ls", "--filter", "label="+cluster.Label, "--format", "{{.Name}}")
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list networks: %w", err))...)
	}
	var networks []string
	for _, n := range strings.Fields(string(out)) {
		if mine(n) {
			networks = append(networks, n)
		}
	}
	for _, n := range networks {
		if skipLive(log, n, force) {
			continue
		}
		done := log.Phase("delete network " + n)
		err := DeleteNetwork(ctx, n)
		done(err)
		errs = append(errs, err)
	}
	if len(names) == 0 && len(networks) == 0 {
		log.Infof("nothing to clean up")
	}
	return errors.Join(errs...)
}

// skipLive reports whether name belongs to a run in progress, which gc
// leaves alone unless forced: deleting a live run's nodes would turn its
// cells' verdicts into noise.
func skipLive(log *logx.Logger, name string, force bool) bool {
	run := cluster.RunOf(name)
	if run == "" || force || !cluster.RunLive(run) {
		return false
	}
	log.Infof("kept %s: run %s is in progress (cnimatrix gc --force deletes it anyway)", name, run)
	return true
}
