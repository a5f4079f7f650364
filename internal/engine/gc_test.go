package engine

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
	kindprov "github.com/cnimatrix/cnimatrix/internal/cluster/kind"
	"github.com/cnimatrix/cnimatrix/internal/logx"
)

// gc leaves a run in progress alone (its network here) and deletes it with
// --force; the run's lock goes with it. The test collects only this run's
// objects (GCRun, the same rule as the host-wide gc): a host-wide gc here
// would delete what other runs or a person's --keep left.
func TestGCLeavesALiveRunAlone(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a Docker engine")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := kindprov.CheckDocker(ctx); err != nil {
		t.Skip(err)
	}
	log := logx.New(testWriter{t}, testing.Verbose())
	e, err := Start(ctx, Options{Log: log, WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.WithoutCancel(ctx))
	if !cluster.RunLive(e.RunID()) {
		t.Fatal("the run does not hold its lock")
	}
	if err := kindprov.GCRun(ctx, log, e.RunID(), false); err != nil {
		t.Fatal(err)
	}
	if !networkExists(e.Network()) {
		t.Fatalf("gc deleted network %s of a run in progress", e.Network())
	}
	if err := kindprov.GCRun(ctx, log, e.RunID(), true); err != nil {
		t.Fatal(err)
	}
	if networkExists(e.Network()) {
		t.Fatalf("gc --force left network %s", e.Network())
	}
	if err := e.Close(ctx); err != nil {
		t.Fatalf("close after gc --force: %v", err)
	}
	if cluster.RunLive(e.RunID()) {
		t.Error("the run's lock outlived it")
	}
}

func networkExists(name string) bool {
	return exec.Command("docker", "network", "inspect", name).Run() == nil
}
