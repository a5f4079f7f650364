package qemu

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
	kindprov "github.com/cnimatrix/cnimatrix/internal/cluster/kind"
	"github.com/cnimatrix/cnimatrix/internal/hostcmd"
	"github.com/cnimatrix/cnimatrix/internal/images"
	"github.com/cnimatrix/cnimatrix/internal/logx"
)

// Provider makes mixed-arch clusters: a kind control plane in the host's
// arch and arm64 workers that are QEMU VMs on the kind network's bridge,
// joined with kubeadm. It implements cluster.Provider.
type Provider struct {
	log   *logx.Logger
	cache *images.Cache
	kind  *kindprov.Provider
	// CPUs and MemoryMB of each VM (defaults 2 and 2048).
	CPUs, MemoryMB int
	// Retain keeps what a failed Create made, for debugging.
	Retain bool

	mu       sync.Mutex
	clusters map[string][]*vmNode
}

// vmNode is one VM of a cluster.
type vmNode struct {
	name, ip, tap string
	vm            *VM
	agent         *Agent
}

// NewProvider returns a provider whose kind control planes are made by kp.
func NewProvider(log *logx.Logger, cache *images.Cache, kp *kindprov.Provider) *Provider {
	if log == nil {
		log = logx.Discard()
	}
	return &Provider{log: log, cache: cache, kind: kp, clusters: map[string][]*vmNode{}}
}

// Name implements cluster.Provider.
func (p *Provider) Name() string { return "qemu" }

// Layout implements cluster.Provider: on a host of another arch, a native
// kind control plane and count-1 VM workers of arch (an all-VM cluster is
// not made yet); on an arm64 host, a uniform layout.
func (p *Provider) Layout(arch string, count int) []cluster.NodeSpec {
	out := cluster.UniformLayout(arch, count)
	if arch == Arch && runtime.GOARCH != Arch {
		out[0].Arch = runtime.GOARCH
	}
	return out
}

// NodeKind implements cluster.Provider.
func (p *Provider) NodeKind(n cluster.NodeSpec) string {
	if n.Arch == Arch && n.Role == cluster.Worker {
		return "QEMU VM"
	}
	return "kind node"
}

// PrepareNodes implements cluster.NodePreparer: the node disk for spec's
// Kubernetes version with spec.Preload in it, built once per content
// (Create uses the same).
func (p *Provider) PrepareNodes(ctx context.Context, spec cluster.Spec) (string, error) {
	disk, err := p.Disk(ctx, spec)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s node disk: kernel %s, Kubernetes %s, preloaded %s", Arch, disk.KernelVersion, disk.KubeVersion, strings.Join(disk.Images, ", ")), nil
}

// Disk is the one place the provider's node disk is built (BuildDisk
// caches it by content): for PrepareNodes, Create and `cnimatrix images
// build --qemu`.
func (p *Provider) Disk(ctx context.Context, spec cluster.Spec) (*Disk, error) {
	return BuildDisk(ctx, p.cache, spec.KubernetesVersion, DiskOptions{Preload: spec.Preload})
}

// Emulated reports whether VMs run under TCG (no KVM for arm64 here).
func Emulated() bool { return accelArgs()[2] != "-enable-kvm" }

// Create implements cluster.Provider: the control plane (and any node of
// the host's arch) by kind, then one VM per arm64 node, booted while kind
// works and joined once the API server answers.
func (p *Provider) Create(ctx context.Context, spec cluster.Spec) (_ *cluster.Cluster, err error) {
	var kindNodes, vmSpecs []cluster.NodeSpec
	for _, n := range spec.Nodes {
		switch {
		case n.Arch == runtime.GOARCH && n.Arch != Arch || n.Arch == Arch && n.Role == cluster.ControlPlane && runtime.GOARCH == Arch:
			kindNodes = append(kindNodes, n)
		case n.Arch == Arch && n.Role == cluster.Worker:
			vmSpecs = append(vmSpecs, n)
		case n.Arch == Arch && n.Role == cluster.ControlPlane:
			return nil, fmt.Errorf("cluster %s: an arm64 control plane on this %s host would be a VM too (all-VM clusters), which this provider does not make yet; use an %s control plane with arm64 workers", spec.Name, runtime.GOARCH, runtime.GOARCH)
		default:
			return nil, fmt.Errorf("cluster %s: provider qemu makes %s VM workers, not %s nodes", spec.Name, Arch, n.Arch)
		}
	}
	if len(kindNodes) == 0 || kindNodes[0].Role != cluster.ControlPlane {
		return nil, fmt.Errorf("cluster %s: the first node must be the control plane", spec.Name)
	}
	if len(vmSpecs) == 0 {
		return nil, fmt.Errorf("cluster %s: no %s workers asked for; use provider kind", spec.Name, Arch)
	}
	if spec.Network == "" {
		return nil, fmt.Errorf("cluster %s: provider qemu needs a named docker network", spec.Name)
	}
	if spec.WorkDir == "" {
		return nil, fmt.Errorf("cluster %s: provider qemu needs a work dir (serial logs, VM state)", spec.Name)
	}
	done := p.log.Phase(fmt.Sprintf("create cluster %s (%d kind node(s) + %d %s VM(s))", spec.Name, len(kindNodes), len(vmSpecs), Arch))
	defer func() { done(err) }()

	disk, err := p.Disk(ctx, spec)
	if err != nil {
		return nil, err
	}
	if _, _, err := kindprov.EnsureNetwork(ctx, spec.Network); err != nil {
		return nil, err
	}
	netw, err := kindprov.InspectNetwork(ctx, spec.Network)
	if err != nil {
		return nil, err
	}
	ips, prefix, err := vmAddresses(netw, len(vmSpecs))
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", spec.Name, err)
	}
	if err := os.MkdirAll(spec.WorkDir, 0o755); err != nil {
		return nil, err
	}

	// From the first tap on, a failure must not leave anything behind.
	defer func() {
		if err != nil && !p.Retain {
			if derr := p.Delete(context.WithoutCancel(ctx), spec.Name); derr != nil {
				p.log.Infof("cleanup of %s after failure: %v", spec.Name, derr)
			}
		}
	}()
	c := &cluster.Cluster{Name: spec.Name, Provider: p.Name(), Emulated: Emulated(), Logs: map[string]string{}}
	mark := func(node, event string) {
		p.mu.Lock()
		c.Marks = append(c.Marks, cluster.Mark{Node: node, Event: event, At: time.Now()})
		p.mu.Unlock()
	}
	var vms []*vmNode
	for i := range vmSpecs {
		n := &vmNode{name: fmt.Sprintf("%s-%s-%d", spec.Name, Arch, i+1), ip: ips[i], tap: tapName(spec.Name, i)}
		token, err := newToken()
		if err != nil {
			return nil, err
		}
		args, err := NodeConfig{Hostname: n.name, Address: fmt.Sprintf("%s/%d", n.ip, prefix), Gateway: netw.Gateway, Agent: true}.KernelArgs()
		if err != nil {
			return nil, err
		}
		if err := AddTap(ctx, n.tap, netw.Bridge); err != nil {
			return nil, err
		}
		p.track(spec.Name, n)
		serial := filepath.Join(spec.WorkDir, n.name+".serial.log")
		c.Logs[n.name+".serial.log"] = serial
		n.vm, err = Boot(ctx, disk, VMOptions{
			Name: n.name, CPUs: p.CPUs, MemoryMB: p.MemoryMB, Net: n.tap, SerialLog: serial,
			KernelArgs: args, StateDir: filepath.Join(spec.WorkDir, "vm-"+n.name), AgentToken: token,
		})
		if err != nil {
			return nil, err
		}
		mark(n.name, "vm-started")
		n.agent = NewAgent(n.ip, token)
		vms = append(vms, n)
		p.log.Infof("VM %s booting (%s on %s, tap %s, disk %s, kernel %s)", n.name, n.ip, netw.Bridge, n.tap, disk.KubeVersion, disk.KernelVersion)
	}

	// While kind makes the control plane, each VM boots and, once its
	// agent answers, is calibrated: that wait is off the critical path.
	type ready struct {
		cal Calibration
		err error
	}
	up := make([]chan ready, len(vms))
	for i, n := range vms {
		up[i] = make(chan ready, 1)
		go func() {
			cal, err := p.bootVM(ctx, n, mark)
			if err == nil && spec.OnBoot != nil {
				spec.OnBoot(n.node())
			}
			up[i] <- ready{cal, err}
		}()
	}
	kspec := spec
	kspec.Nodes = kindNodes
	kc, err := p.kind.Create(ctx, kspec)
	if err != nil {
		return nil, err
	}
	mark(kc.Nodes[0].Name, "control-plane-up")
	c.Kubeconfig, c.Nodes = kc.Kubeconfig, kc.Nodes
	cp := kc.Nodes[0]
	var out, errb bytes.Buffer
	if err := cp.Exec.Run(ctx, &out, &errb, "kubeadm", "token", "create", "--print-join-command", "--ttl", "2h"); err != nil {
		return nil, fmt.Errorf("join command from %s: %w: %s", cp.Name, err, hostcmd.LastLines(errb.String(), 5))
	}
	join := strings.Fields(strings.TrimSpace(out.String()))
	if len(join) < 3 || join[0] != "kubeadm" || join[1] != "join" {
		return nil, fmt.Errorf("join command from %s: unexpected %q", cp.Name, out.String())
	}
	certs, err := mirrorSetup(spec.Mirror)
	if err != nil {
		return nil, err
	}

	errs := make([]error, len(vms))
	slow := make([]float64, len(vms))
	var wg sync.WaitGroup
	for i, n := range vms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := <-up[i]
			if r.err != nil {
				errs[i] = r.err
				return
			}
			slow[i] = r.cal.Factor()
			errs[i] = p.joinVM(ctx, n, cp, join, certs, r.cal, mark)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, n := range vms {
		note, err := provesArch(ctx, n)
		if err != nil {
			return nil, err
		}
		c.Notes = append(c.Notes, note)
	}
	c.Slowdown = slices.Max(slow)
	for _, n := range vms {
		c.Nodes = append(c.Nodes, n.node())
	}
	return c, nil
}

func (n *vmNode) node() cluster.Node {
	return cluster.Node{Name: n.name, Role: cluster.Worker, Arch: Arch, InternalIP: n.ip, Exec: n.agent, Agent: n.agent.Addr}
}

// bootVM waits for the VM's agent and calibrates the VM.
func (p *Provider) bootVM(ctx context.Context, n *vmNode, mark func(node, event string)) (Calibration, error) {
	bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := p.waitAgent(bctx, n); err != nil {
		return Calibration{}, err
	}
	mark(n.name, "agent-up")
	p.log.Infof("VM %s up in %s", n.name, time.Since(n.vm.Started).Round(100*time.Millisecond))
	cal, err := Calibrate(bctx, p.cache, n.agent)
	if err != nil {
		return cal, fmt.Errorf("VM %s: %w", n.name, err)
	}
	p.log.Infof("VM %s: %s", n.name, cal)
	return cal, nil
}

// waitCRI polls containerd's CRI (crictl version, 30 s per try) with a
// doubling pause, for about 5 minutes at most.
const waitCRI = `d=1; for i in $(seq 12); do
  if crictl --timeout 30s version >/dev/null 2>&1; then d=0; break; fi
  sleep $d; if [ $d -lt 16 ]; then d=$((d*2)); fi
done
[ $d -eq 0 ] || { echo "containerd's CRI did not answer" >&2; crictl --timeout 30s version; exit 1; }
`

// joinVM configures the registry mirror and the control plane's name in
// the VM and runs kubeadm join, with a deadline scaled by the VM's slowdown.
func (p *Provider) joinVM(ctx context.Context, n *vmNode, cp cluster.Node, join []string, certs string, cal Calibration, mark func(node, event string)) error {
	// The control plane's name is what kubeadm's cluster-info points at.
	setup := fmt.Sprintf("set -e\necho '%s %s' >>/etc/hosts\n", cp.InternalIP, cp.Name)
	setup += certs
	// The agent may answer before the rest of the boot is done. kubeadm's
	// preflight gives the CRI a few seconds; a containerd that systemd calls
	// started may need longer to answer under TCG on a busy host (seen:
	// "validate CRI v1 runtime API ... DeadlineExceeded" at a factor of 16),
	// so the setup waits, with backoff, until it answers.
	setup += "systemctl start containerd.service\n" + waitCRI
	if _, _, err := n.agent.Exec(ctx, setup, "bash", "-s"); err != nil {
		return fmt.Errorf("VM %s: setup: %w", n.name, err)
	}
	argv := append(append([]string{}, join...), "--node-name", n.name)
	jctx, cancel := context.WithTimeout(ctx, time.Duration(float64(3*time.Minute)*max(1, cal.Factor()/8)))
	defer cancel()
	mark(n.name, "join-started")
	t0 := time.Now()
	stdout, stderr, err := n.agent.Exec(jctx, "", argv...)
	if err != nil {
		return fmt.Errorf("VM %s: kubeadm join: %w\n%s", n.name, err, hostcmd.LastLines(stdout+stderr, 15))
	}
	mark(n.name, "joined")
	p.log.Infof("VM %s joined in %s (%s after VM start)", n.name, time.Since(t0).Round(100*time.Millisecond), time.Since(n.vm.Started).Round(100*time.Millisecond))
	return nil
}

// provesArch runs the disk's static x86-64 program in the VM: on a real
// aarch64 kernel (no binfmt emulation inside the VM) exec must fail with
// "exec format error", as on arm64 hardware. A VM that runs it would hide
// exactly the failures cnimatrix hunts, so that is an error.
func provesArch(ctx context.Context, n *vmNode) (string, error) {
	uname, _, err := n.agent.Exec(ctx, "", "uname", "-m")
	if err != nil {
		return "", fmt.Errorf("VM %s: uname: %w", n.name, err)
	}
	stdout, stderr, err := n.agent.Exec(ctx, "", "bash", "-c", "/usr/local/bin/hello-amd64")
	out := strings.TrimSpace(stdout + stderr)
	var ee *ExitError
	if !errors.As(err, &ee) || !strings.Contains(strings.ToLower(out), "exec format error") {
		return "", fmt.Errorf("VM %s (uname -m %s) ran an x86-64 binary (%v: %q): it is not a truthful arm64 node", n.name, strings.TrimSpace(uname), err, out)
	}
	return fmt.Sprintf("node %s: uname -m %s; x86-64 static binary: exit %d, %q", n.name, strings.TrimSpace(uname), ee.Code, out), nil
}

// waitAgent waits for the VM's agent, failing early when QEMU exits.
func (p *Provider) waitAgent(ctx context.Context, n *vmNode) error {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-n.vm.exited:
			cancel()
		case <-actx.Done():
		}
	}()
	if err := n.agent.WaitHealthy(actx); err != nil {
		b, _ := os.ReadFile(n.vm.SerialLog)
		why := "did not come up"
		if n.vm.Exited() {
			why = fmt.Sprintf("exited (%v)", n.vm.waitErr)
		}
		return fmt.Errorf("VM %s %s in %s: %w; console:\n%s", n.name, why, time.Since(n.vm.Started).Round(time.Second), err, hostcmd.LastLines(string(b), 20))
	}
	return nil
}

func (p *Provider) track(name string, n *vmNode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clusters[name] = append(p.clusters[name], n)
}

// Delete implements cluster.Provider: VMs, taps, then the kind nodes. It
// also ends VMs and taps of the cluster that another process started.
func (p *Provider) Delete(ctx context.Context, name string) error {
	p.mu.Lock()
	vms := p.clusters[name]
	delete(p.clusters, name)
	p.mu.Unlock()
	var errs []error
	var wg sync.WaitGroup
	for _, n := range vms {
		if n.vm == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The VM is thrown away: a clean guest shutdown buys nothing.
			sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			_ = n.vm.Kill(sctx)
		}()
	}
	wg.Wait()
	errs = append(errs, killStrays(ctx, func(vmName string) bool { return strings.HasPrefix(vmName, name+"-"+Arch+"-") }))
	errs = append(errs, deleteTaps(ctx, tapPrefix(name)))
	errs = append(errs, p.kind.Delete(ctx, name))
	return errors.Join(errs...)
}

// List implements cluster.Provider: clusters with a running VM.
func (p *Provider) List(ctx context.Context) ([]string, error) {
	names, err := vmProcesses()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, v := range names {
		if m := vmNameRe.FindStringSubmatch(v.name); m != nil && !seen[m[1]] {
			seen[m[1]] = true
			out = append(out, m[1])
		}
	}
	slices.Sort(out)
	return out, nil
}

var vmNameRe = regexp.MustCompile(`^(` + regexp.QuoteMeta(cluster.NamePrefix) + `.*)-` + Arch + `-[0-9]+$`)

// keptTap reports whether tap belongs to a cluster whose taps are kept
// (their prefixes).
func keptTap(tap string, prefixes map[string]bool) bool {
	for p := range prefixes {
		if strings.HasPrefix(tap, p) {
			return true
		}
	}
	return false
}

// GC ends every VM and tap cnimatrix left behind (its clusters' kind nodes
// are the kind provider's to delete).
func GC(ctx context.Context, log *logx.Logger, force bool) error {
	// A run in progress keeps its VMs and their taps, unless forced.
	keepTaps := map[string]bool{}
	err := killStrays(ctx, func(name string) bool {
		m := vmNameRe.FindStringSubmatch(name)
		if m == nil {
			return false
		}
		if run := cluster.RunOf(name); run != "" && !force && cluster.RunLive(run) {
			log.Infof("kept VM %s: run %s is in progress (cnimatrix gc --force stops it anyway)", name, run)
			keepTaps[tapPrefix(m[1])] = true
			return false
		}
		log.Infof("stopping VM %s", name)
		return true
	})
	ifs, _ := net.Interfaces()
	var errs []error
	for _, i := range ifs {
		if !strings.HasPrefix(i.Name, tapBase) {
			continue
		}
		if keptTap(i.Name, keepTaps) {
			continue
		}
		log.Infof("deleting tap %s", i.Name)
		errs = append(errs, deleteTaps(ctx, i.Name))
	}
	return errors.Join(append(errs, err)...)
}

// tapBase starts every tap cnimatrix makes.
const tapBase = "cmx"

func tapPrefix(cluster string) string {
	h := sha256.Sum256([]byte(cluster))
	return tapBase + hex.EncodeToString(h[:4])
}

// tapName fits IFNAMSIZ: cmx + 8 hex digits of the cluster + the index.
func tapName(cluster string, i int) string { return fmt.Sprintf("%s%d", tapPrefix(cluster), i) }

func deleteTaps(ctx context.Context, prefix string) error {
	ifs, err := net.Interfaces()
	if err != nil {
		return err
	}
	var errs []error
	for _, i := range ifs {
		if strings.HasPrefix(i.Name, prefix) {
			errs = append(errs, DeleteTap(ctx, i.Name))
		}
	}
	return errors.Join(errs...)
}

// vmAddresses picks n addresses for VMs from the top of the network's
// subnet: Docker's IPAM hands out addresses from the bottom, in order, so
// the top stays free; addresses Docker did give out are skipped.
func vmAddresses(n *kindprov.Network, count int) ([]string, int, error) {
	pfx, err := netip.ParsePrefix(n.Subnet)
	if err != nil {
		return nil, 0, fmt.Errorf("network %s subnet %q: %w", n.Name, n.Subnet, err)
	}
	pfx = pfx.Masked()
	if pfx.Bits() > 24 {
		return nil, 0, fmt.Errorf("network %s subnet %s is too small for VM nodes", n.Name, n.Subnet)
	}
	used := map[string]bool{n.Gateway: true}
	for _, u := range n.Used {
		used[u] = true
	}
	// Last address of the subnet (broadcast), then downwards.
	a := pfx.Addr().As4()
	hostBits := 32 - pfx.Bits()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= (1 << hostBits) - 1
	var out []string
	for v--; len(out) < count && pfx.Contains(addr4(v)); v-- {
		if s := addr4(v).String(); !used[s] {
			out = append(out, s)
		}
	}
	if len(out) < count {
		return nil, 0, fmt.Errorf("network %s: no free addresses for %d VMs", n.Name, count)
	}
	return out, pfx.Bits(), nil
}

func addr4(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func newToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// mirrorSetup is a shell script that writes the containerd certs.d tree
// of the mirror in the VM (containerd reads it at each pull).
func mirrorSetup(m *cluster.Mirror) (string, error) {
	if m == nil {
		return "", nil
	}
	hostPort, ok := strings.CutPrefix(strings.TrimRight(m.Endpoint, "/"), "http://")
	if !ok || hostPort == "" {
		return "", fmt.Errorf("mirror endpoint %q: want http://host:port", m.Endpoint)
	}
	files, err := images.ContainerdHosts(hostPort, m.Upstreams)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, rel := range slices.Sorted(maps.Keys(files)) {
		dst := "/etc/containerd/certs.d/" + rel
		fmt.Fprintf(&b, "mkdir -p %q\nbase64 -d >%q <<'EOF'\n%s\nEOF\n", path.Dir(dst), dst, base64.StdEncoding.EncodeToString([]byte(files[rel])))
	}
	return b.String(), nil
}

// vmProc is a running QEMU of ours.
type vmProc struct {
	pid  int
	name string
}

// vmProcesses finds qemu-system-aarch64 processes and their -name.
func vmProcesses() ([]vmProc, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []vmProc
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) == 0 || filepath.Base(args[0]) != "qemu-system-aarch64" {
			continue
		}
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "-name" {
				out = append(out, vmProc{pid: pid, name: args[i+1]})
				break
			}
		}
	}
	return out, nil
}

// killStrays kills QEMU processes whose VM name matches and waits for them.
func killStrays(ctx context.Context, match func(name string) bool) error {
	procs, err := vmProcesses()
	if err != nil {
		return err
	}
	var left []vmProc
	for _, v := range procs {
		if match(v.name) {
			_ = syscall.Kill(v.pid, syscall.SIGKILL)
			left = append(left, v)
		}
	}
	delay := 50 * time.Millisecond
	for len(left) > 0 {
		var still []vmProc
		for _, v := range left {
			if err := syscall.Kill(v.pid, 0); err == nil {
				still = append(still, v)
			}
		}
		if left = still; len(left) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("VM %s (pid %d) still running: %w", left[0].name, left[0].pid, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*2, time.Second)
	}
	return nil
}
