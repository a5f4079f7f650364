package engine

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
)

// countingExec answers the kernel probe with a fixed kernel and counts
// the probes; fail makes its first probe fail.
type countingExec struct {
	machine string
	calls   atomic.Int32
	fail    bool
}

func (c *countingExec) Run(ctx context.Context, stdout, stderr io.Writer, argv ...string) error {
	if stdout == nil {
		return nil // the cleanup after a failed probe
	}
	if c.calls.Add(1) == 1 && c.fail {
		return errors.New("agent went away")
	}
	_, err := io.WriteString(stdout, "release=6.1.0-57\nmachine="+c.machine+"\nvxlan.link=0 \n")
	return err
}

func TestEarlyFactsUsedAndRetried(t *testing.T) {
	ctx := context.Background()
	vm := &countingExec{machine: "aarch64"}
	flaky := &countingExec{machine: "aarch64", fail: true}
	kind := &countingExec{machine: "x86_64"}
	nodes := []cluster.Node{
		{Name: "cp", Exec: kind},
		{Name: "vm-1", Exec: vm},
		{Name: "vm-2", Exec: flaky},
	}
	ef := &earlyFacts{}
	boot := ef.onBoot(ctx)
	boot(nodes[1])
	boot(nodes[2])
	facts, err := ef.probe(ctx, nodes)
	if err != nil {
		t.Fatal(err)
	}
	if len(facts) != 3 || facts[0].Node != "cp" || facts[1].Node != "vm-1" || facts[2].Node != "vm-2" {
		t.Fatalf("facts = %+v", facts)
	}
	if facts[1].Machine != "aarch64" || !facts[1].VXLAN.Available {
		t.Errorf("vm-1 facts = %+v", facts[1])
	}
	// Read once at boot, not again; the failed boot-time read is retried.
	if n := vm.calls.Load(); n != 1 {
		t.Errorf("vm-1 probed %d times, want 1", n)
	}
	if n := flaky.calls.Load(); n != 2 {
		t.Errorf("vm-2 probed %d times, want 2 (boot failed, retried)", n)
	}
	if n := kind.calls.Load(); n != 1 {
		t.Errorf("cp probed %d times, want 1", n)
	}
}
