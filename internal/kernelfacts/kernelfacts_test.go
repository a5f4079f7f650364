package kernelfacts

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
)

// fakeExec answers the probe script with a scripted output and records
// every command, so tests see whether the cleanup ran.
type fakeExec struct {
	mu      sync.Mutex
	stdout  string
	stderr  string
	err     error
	block   bool // wait for ctx to end instead of answering
	scripts []string
}

func (f *fakeExec) Run(ctx context.Context, stdout, stderr io.Writer, argv ...string) error {
	f.mu.Lock()
	f.scripts = append(f.scripts, argv[len(argv)-1])
	f.mu.Unlock()
	if argv[len(argv)-1] == cleanupScript {
		return nil
	}
	if f.block {
		<-ctx.Done()
		return ctx.Err()
	}
	if stdout != nil {
		_, _ = io.WriteString(stdout, f.stdout)
	}
	if stderr != nil {
		_, _ = io.WriteString(stderr, f.stderr)
	}
	return f.err
}

func (f *fakeExec) cleanedUp() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.scripts {
		if s == cleanupScript {
			return true
		}
	}
	return false
}

// Output as this development machine's kind nodes print it: a kernel
// without module support, vxlan built in, ipip not configured.
const noIPIPOutput = `release=6.18.44-fc-v1272
machine=x86_64
pagesize=4096
ipip.sys=absent
ipip.modules=nodir
ipip.config=# CONFIG_NET_IPIP is not set
vxlan.sys=builtin
vxlan.modules=nodir
vxlan.config=CONFIG_VXLAN=y
wireguard.sys=absent
wireguard.modules=nodir
wireguard.config=# CONFIG_WIREGUARD is not set
ipip.link=2 Error: Unknown device type.
vxlan.link=0
wireguard.link=2 Error: Unknown device type.
iptables=iptables v1.8.9 (nf_tables)
`

// A Debian arm64 node: everything loadable, ipip not yet loaded.
const debianOutput = `release=6.1.0-40-arm64
machine=aarch64
pagesize=4096
ipip.sys=absent
ipip.modules=loadable
ipip.modprobe=0 insmod /lib/modules/6.1.0-40-arm64/kernel/net/ipv4/tunnel4.ko insmod /lib/modules/6.1.0-40-arm64/kernel/net/ipv4/ipip.ko
vxlan.sys=loaded
vxlan.modules=loadable
vxlan.modprobe=0
wireguard.sys=absent
wireguard.modules=loadable
ipip.link=0
vxlan.link=0
wireguard.link=0
iptables=iptables v1.8.9 (legacy)
`

func node(name string, ex cluster.Execer) cluster.Node {
	return cluster.Node{Name: name, Role: cluster.Worker, Arch: "amd64", Exec: ex}
}

func TestProbeNoIPIP(t *testing.T) {
	ex := &fakeExec{stdout: noIPIPOutput}
	f, err := Probe(context.Background(), node("w1", ex))
	if err != nil {
		t.Fatal(err)
	}
	t.Log(f)
	if f.IPIP.Available || !f.IPIP.Definitive || f.IPIP.Module != ModuleAbsent {
		t.Errorf("ipip = %+v, want unavailable, definitive, absent", f.IPIP)
	}
	if !f.VXLAN.Available || !f.VXLAN.Definitive || f.VXLAN.Module != ModuleBuiltin {
		t.Errorf("vxlan = %+v, want available, definitive, builtin", f.VXLAN)
	}
	if f.WireGuard.Available {
		t.Errorf("wireguard = %+v", f.WireGuard)
	}
	if f.IPTablesBackend != "nf_tables" || f.Release != "6.18.44-fc-v1272" || f.Machine != "x86_64" || f.PageSize != 4096 {
		t.Errorf("facts = %+v", f)
	}
	if !strings.Contains(strings.Join(f.IPIP.Evidence, "; "), "ip link add type ipip: Error: Unknown device type.") {
		t.Errorf("ipip evidence = %q", f.IPIP.Evidence)
	}
	if ex.cleanedUp() {
		t.Error("a successful probe ran the separate cleanup; the script cleans up itself")
	}
}

func TestProbeLoadable(t *testing.T) {
	f, err := Probe(context.Background(), node("arm1", &fakeExec{stdout: debianOutput}))
	if err != nil {
		t.Fatal(err)
	}
	if !f.IPIP.Available || f.IPIP.Module != ModuleLoadable || !f.VXLAN.Available || f.VXLAN.Module != ModuleLoaded {
		t.Errorf("facts = %s", f)
	}
	if f.IPTablesBackend != "legacy" {
		t.Errorf("backend = %q", f.IPTablesBackend)
	}
	if !strings.Contains(strings.Join(f.IPIP.Evidence, "; "), "modprobe -n -v: insmod") {
		t.Errorf("ipip evidence = %q", f.IPIP.Evidence)
	}
}

// Without CAP_NET_ADMIN the link test says nothing about the kernel: the
// verdict falls back to the module index.
func TestProbeLinkTestNotPermitted(t *testing.T) {
	out := strings.NewReplacer(
		"ipip.link=0", "ipip.link=2 RTNETLINK answers: Operation not permitted",
		"vxlan.link=0", "vxlan.link=2 RTNETLINK answers: Operation not permitted",
	).Replace(debianOutput)
	out = strings.Replace(out, "ipip.modules=loadable", "ipip.modules=absent", 1)
	f, err := Probe(context.Background(), node("n", &fakeExec{stdout: out}))
	if err != nil {
		t.Fatal(err)
	}
	if f.IPIP.Definitive || f.IPIP.Available || f.IPIP.Module != ModuleAbsent {
		t.Errorf("ipip = %+v, want a non-definitive absent", f.IPIP)
	}
	if f.VXLAN.Definitive || !f.VXLAN.Available {
		t.Errorf("vxlan = %+v, want a non-definitive available (module loaded)", f.VXLAN)
	}
	if err := Require([]Facts{f}, EncapIPIP); err == nil {
		t.Error("IPIP required on a node whose module index lacks ipip: no error")
	}
}

func TestProbeFailureCleansUp(t *testing.T) {
	ex := &fakeExec{err: errors.New("exit status 1"), stderr: "sh: 3: getconf: not found"}
	_, err := Probe(context.Background(), node("w1", ex))
	if err == nil || !strings.Contains(err.Error(), "node w1") || !strings.Contains(err.Error(), "getconf: not found") {
		t.Errorf("err = %v", err)
	}
	if !ex.cleanedUp() {
		t.Error("test links not cleaned up after a failed probe")
	}
}

func TestProbeDeadline(t *testing.T) {
	ex := &fakeExec{block: true}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	_, err := Probe(ctx, node("slow", ex))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want the deadline", err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("probe took %s past a 100ms deadline", d)
	}
	if !ex.cleanedUp() {
		t.Error("test links not cleaned up after the deadline")
	}
}

func TestProbeNoExec(t *testing.T) {
	if _, err := Probe(context.Background(), cluster.Node{Name: "x"}); err == nil || !strings.Contains(err.Error(), "node x") {
		t.Errorf("err = %v", err)
	}
}

func TestProbeGarbage(t *testing.T) {
	if _, err := Probe(context.Background(), node("x", &fakeExec{stdout: "sh: syntax error"})); err == nil || !strings.Contains(err.Error(), "no kernel release") {
		t.Errorf("err = %v", err)
	}
}

func TestProbeAll(t *testing.T) {
	nodes := []cluster.Node{node("a", &fakeExec{stdout: noIPIPOutput}), node("b", &fakeExec{err: errors.New("agent unreachable")}), node("c", &fakeExec{stdout: debianOutput})}
	facts, err := ProbeAll(context.Background(), nodes)
	if err == nil || !strings.Contains(err.Error(), "node b") || !strings.Contains(err.Error(), "agent unreachable") {
		t.Errorf("err = %v", err)
	}
	if len(facts) != 2 || facts[0].Node != "a" || facts[1].Node != "c" {
		t.Errorf("facts = %v", facts)
	}
}

func TestRequire(t *testing.T) {
	noIPIP, err := parse("kind-worker", noIPIPOutput)
	if err != nil {
		t.Fatal(err)
	}
	full, err := parse("arm1", debianOutput)
	if err != nil {
		t.Fatal(err)
	}
	both := []Facts{full, noIPIP}
	for _, enc := range []string{EncapVXLAN, EncapVXLANCrossSubnet, EncapNone} {
		if err := Require(both, enc); err != nil {
			t.Errorf("%s: %v", enc, err)
		}
	}
	for _, enc := range []string{EncapIPIP, EncapIPIPCrossSubnet} {
		err := Require(both, enc)
		t.Logf("%s: %v", enc, err)
		var me *MissingError
		if !errors.As(err, &me) {
			t.Fatalf("%s: err = %v, want a *MissingError", enc, err)
		}
		msg := err.Error()
		for _, want := range []string{"kernel-feature: node kind-worker (6.18.44-fc-v1272 x86_64) has no ipip module", enc + " encapsulation cannot work", "use VXLAN or None", "Unknown device type"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: %q lacks %q", enc, msg, want)
			}
		}
		if strings.Contains(msg, "node arm1") {
			t.Errorf("%s: blames arm1, whose kernel has ipip: %s", enc, msg)
		}
	}
	if err := Require(both, "Geneve"); err == nil || !strings.Contains(err.Error(), "unknown encapsulation") {
		t.Errorf("Geneve: %v", err)
	}
	// No vxlan anywhere: VXLAN fails on both nodes, and IPIP is offered
	// only if every node has it (one does not), so only None is left.
	noVX := noIPIP
	noVX.Node = "novx"
	noVX.VXLAN = Feature{Name: "vxlan", Definitive: true, Module: ModuleAbsent}
	err = Require([]Facts{noVX, full}, EncapVXLAN)
	if err == nil || !strings.Contains(err.Error(), "node novx") || !strings.Contains(err.Error(), "use None") || strings.Contains(err.Error(), "use IPIP") {
		t.Errorf("VXLAN without vxlan: %v", err)
	}
	// An unknown module state is not a reason to fail a cell.
	unknown := Facts{Node: "u", IPIP: Feature{Name: "ipip", Module: ModuleUnknown}}
	if err := Require([]Facts{unknown}, EncapIPIP); err != nil {
		t.Errorf("unknown ipip: %v", err)
	}
}

func TestIPTablesBackend(t *testing.T) {
	for in, want := range map[string]string{
		"iptables v1.8.9 (nf_tables)": "nf_tables",
		"iptables v1.8.7 (legacy)":    "legacy",
		"iptables v1.6.2":             "legacy",
		"iptables v1.8.2":             "unknown",
		"":                            "",
	} {
		if got := iptablesBackend(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}
