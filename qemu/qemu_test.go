package qemu

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/hostcmd"
	"github.com/cnimatrix/cnimatrix/internal/images"
	"github.com/cnimatrix/cnimatrix/internal/logx"
)

func TestKernelArgs(t *testing.T) {
	c := NodeConfig{
		Hostname:    "vm-worker",
		Address:     "172.18.0.50/16",
		Gateway:     "172.18.0.1",
		Hosts:       map[string]string{"kind-control-plane": "172.18.0.2"},
		JoinCommand: "kubeadm join 172.18.0.2:6443 --token abc.def --discovery-token-ca-cert-hash sha256:00",
		SelfTest:    true,
	}
	args, err := c.KernelArgs()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, a := range args {
		if strings.ContainsAny(a, " \t\n") {
			t.Errorf("argument %q has white space", a)
		}
		k, v, _ := strings.Cut(a, "=")
		got[k] = v
	}
	if got["cnimatrix.hostname"] != "vm-worker" || got["cnimatrix.ip"] != "172.18.0.50/16" || got["cnimatrix.gw"] != "172.18.0.1" || got["cnimatrix.selftest"] != "1" {
		t.Errorf("args %q", args)
	}
	for k, want := range map[string]string{"cnimatrix.hosts": "172.18.0.2 kind-control-plane\n", "cnimatrix.join": c.JoinCommand} {
		b, err := base64.StdEncoding.DecodeString(got[k])
		if err != nil || string(b) != want {
			t.Errorf("%s = %q (%v), want base64 of %q", k, got[k], err, want)
		}
	}
	for _, bad := range []NodeConfig{{Hostname: "Bad_Name"}, {Address: "172.18.0.50"}, {Gateway: "x"}, {Hosts: map[string]string{"a": "nope"}}, {JoinCommand: strings.Repeat("x", 3000)}} {
		if _, err := bad.KernelArgs(); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

func TestModuleLoadOrder(t *testing.T) {
	dep := filepath.Join(t.TempDir(), "modules.dep")
	os.WriteFile(dep, []byte(`kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko:
kernel/fs/mbcache.ko:
kernel/lib/crc16.ko:
kernel/drivers/block/virtio_blk.ko:
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
`), 0o644)
	got, err := moduleLoadOrder(dep, []string{"virtio_pci", "virtio-blk", "virtio_net", "ext4"})
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, m := range got {
		pos[moduleName(m)] = i
	}
	if len(got) != 8 {
		t.Fatalf("order %q", got)
	}
	for _, p := range [][2]string{{"failover", "net_failover"}, {"net_failover", "virtio_net"}, {"jbd2", "ext4"}, {"crc16", "ext4"}, {"mbcache", "ext4"}} {
		if pos[p[0]] > pos[p[1]] {
			t.Errorf("%s after %s in %q", p[0], p[1], got)
		}
	}
}

func TestCpioNewc(t *testing.T) {
	var buf bytes.Buffer
	w := &cpioWriter{w: &buf}
	w.dir(".")
	w.charDev("dev/console", 0o600, 5, 1)
	w.file("init", 0o755, []byte("hello"))
	w.trailer()
	if w.err != nil {
		t.Fatal(w.err)
	}
	b := buf.Bytes()
	if len(b)%4 != 0 {
		t.Errorf("archive length %d not 4-aligned", len(b))
	}
	if !bytes.HasPrefix(b, []byte("070701")) || !bytes.Contains(b, []byte("init\x00")) || !bytes.Contains(b, []byte("TRAILER!!!\x00")) {
		t.Errorf("not a newc archive: %q", b)
	}
	// The console entry carries rdev 5:1 (fields 11 and 12 of the header).
	i := bytes.Index(b, []byte("dev/console"))
	hdr := string(b[i-110 : i])
	if hdr[6+9*8:6+10*8] != "00000005" || hdr[6+10*8:6+11*8] != "00000001" {
		t.Errorf("console header %q", hdr)
	}
}

// qemuTest skips unless CNIMATRIX_QEMU=1 without -short, and returns the
// node disk (built or cached) of $CNIMATRIX_QEMU_K8S (default v1.37.2).
func qemuTest(t *testing.T, ctx context.Context) *Disk {
	t.Helper()
	if testing.Short() || os.Getenv("CNIMATRIX_QEMU") != "1" {
		t.Skip("set CNIMATRIX_QEMU=1 (and no -short) to build a disk and boot a VM (minutes)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	c, err := images.NewCache(images.DefaultCacheDir(), logx.New(testWriter{t}, true))
	if err != nil {
		t.Fatal(err)
	}
	version := os.Getenv("CNIMATRIX_QEMU_K8S")
	if version == "" {
		version = "v1.37.2"
	}
	t0 := time.Now()
	disk, err := BuildDisk(ctx, c, version, DiskOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("disk %s (kernel %s) in %s", disk.Key, disk.KernelVersion, time.Since(t0).Round(100*time.Millisecond))
	return disk
}

// bootTest boots a VM and stops it when the test ends; wait waits for a
// console line (5 minutes at most) and logs it with the time since start.
func bootTest(t *testing.T, ctx context.Context, disk *Disk, opts VMOptions) (vm *VM, wait func(re string) string) {
	t.Helper()
	if opts.SerialLog == "" {
		opts.SerialLog = filepath.Join(t.TempDir(), "serial.log")
	}
	vm, err := Boot(ctx, disk, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		t1 := time.Now()
		if err := vm.Stop(context.Background()); err != nil {
			t.Error(err)
		}
		t.Logf("stop: %s", time.Since(t1).Round(100*time.Millisecond))
		if b, err := os.ReadFile(opts.SerialLog); err == nil && t.Failed() {
			t.Logf("console:\n%s", b)
		}
	})
	wait = func(re string) string {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		line, err := vm.WaitForLog(wctx, regexp.MustCompile(re))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%6.1fs %s", time.Since(vm.Started).Seconds(), line)
		return line
	}
	return vm, wait
}

// TestBootSelftest builds the arm64 disk, boots it under QEMU (user-mode
// network) and checks the kernel is a real aarch64 one that refuses amd64
// binaries, with the node's modules, sysctls and preloaded images in place.
func TestBootSelftest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	disk := qemuTest(t, ctx)
	c, err := images.NewCache(images.DefaultCacheDir(), logx.Discard())
	if err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	if _, err := BuildDisk(ctx, c, disk.KubeVersion, DiskOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("warm BuildDisk: %s", time.Since(t1).Round(time.Millisecond))

	args, err := NodeConfig{Hostname: "selftest", Address: "10.0.2.15/24", Gateway: "10.0.2.2", DNS: []string{"10.0.2.3"}, SelfTest: true}.KernelArgs()
	if err != nil {
		t.Fatal(err)
	}
	_, wait := bootTest(t, ctx, disk, VMOptions{Name: "selftest", CPUs: 2, MemoryMB: 2048, SerialLog: os.Getenv("CNIMATRIX_QEMU_SERIAL_LOG"), KernelArgs: args})
	wait(`cnimatrix-initramfs: .* mounted`)
	wait(`cnimatrix-node: hostname selftest, eth0 10\.0\.2\.15/24`)
	wait(`cnimatrix-selftest: uname -m: aarch64`)
	wait(`cnimatrix-selftest: hello-amd64 exit 126: .*[Ee]xec format error`)
	wait(`cnimatrix-selftest: modules: br_netfilter ext4 overlay virtio_net vxlan`)
	wait(`cnimatrix-selftest: sysctl: 1 1`)
	images := wait(`cnimatrix-selftest: images: `)
	for _, ref := range disk.Images {
		if !strings.Contains(images, ref) {
			t.Errorf("containerd in the VM lacks %s", ref)
		}
	}
	wait(`cnimatrix-selftest: containerd v2`)
	wait(`cnimatrix-selftest: container kube-proxy --version: Kubernetes ` + regexp.QuoteMeta(disk.KubeVersion))
	if l := wait(`cnimatrix-selftest: failed units:`); !strings.HasSuffix(strings.TrimSpace(l), "failed units:") {
		t.Errorf("failed units in the VM: %s", l)
	}
	wait(`cnimatrix-node: ready`)
	wait(`Reached target.*Multi-User`)
}

// TestBootTap boots two VMs from the same disk on tap devices of a private
// bridge with static addresses (as VMs on a kind network are): each pings
// the host's bridge address and the other by its /etc/hosts name.
func TestBootTap(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	disk := qemuTest(t, ctx)
	const bridge = "cnmq-br0"
	if err := hostcmd.Run(ctx, "ip", "link", "add", bridge, "type", "bridge"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hostcmd.Run(context.Background(), "ip", "link", "del", bridge) })
	for _, args := range [][]string{{"addr", "add", "192.168.251.1/24", "dev", bridge}, {"link", "set", bridge, "up"}} {
		if err := hostcmd.Run(ctx, "ip", args...); err != nil {
			t.Fatal(err)
		}
	}
	// With br_netfilter loaded (Docker loads it) bridged frames cross the
	// host's FORWARD chain, whose policy Docker sets to DROP; Docker lets
	// its own bridges through, this one needs the same rule.
	fwd := []string{"FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"}
	if err := hostcmd.Run(ctx, "iptables", append([]string{"-I"}, fwd...)...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hostcmd.Run(context.Background(), "iptables", append([]string{"-D"}, fwd...)...) })
	addr := map[string]string{"vm-a": "192.168.251.10", "vm-b": "192.168.251.11"}
	peer := map[string]string{"vm-a": "vm-b", "vm-b": "vm-a"}
	waits := map[string]func(string) string{}
	for _, name := range []string{"vm-a", "vm-b"} {
		tap := "cnmq-" + name
		if err := AddTap(ctx, tap, bridge); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := DeleteTap(context.Background(), tap); err != nil {
				t.Error(err)
			}
		})
		args, err := NodeConfig{
			Hostname: name, Address: addr[name] + "/24", Gateway: "192.168.251.1",
			Hosts: map[string]string{peer[name]: addr[peer[name]]}, SelfTest: true,
		}.KernelArgs()
		if err != nil {
			t.Fatal(err)
		}
		_, waits[name] = bootTest(t, ctx, disk, VMOptions{Name: name, Net: tap, CPUs: 1, KernelArgs: args})
	}
	ids := map[string]bool{}
	for _, name := range []string{"vm-a", "vm-b"} {
		wait := waits[name]
		wait(`cnimatrix-node: hostname ` + name + `, eth0 ` + regexp.QuoteMeta(addr[name]) + `/24`)
		wait(`cnimatrix-selftest: ping gateway 192\.168\.251\.1 ok`)
		wait(`cnimatrix-selftest: ping ` + peer[name] + ` \(` + regexp.QuoteMeta(addr[peer[name]]) + `\) ok`)
		ids[machineIDRe.FindStringSubmatch(wait(machineIDRe.String()))[1]] = true
		wait(`Reached target.*Multi-User`)
	}
	if len(ids) != 2 {
		t.Errorf("the VMs share a machine ID")
	}
}

// TestBootBadRoot checks the initramfs's failure path: a missing root disk
// is reported on the console and the VM powers off, so WaitForLog fails
// fast instead of timing out.
func TestBootBadRoot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	disk := qemuTest(t, ctx)
	log := filepath.Join(t.TempDir(), "serial.log")
	vm, err := Boot(ctx, disk, VMOptions{Name: "badroot", CPUs: 1, SerialLog: log, KernelArgs: []string{"root=/dev/vdz"}})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Stop(context.Background())
	wctx, wcancel := context.WithTimeout(ctx, 3*time.Minute)
	defer wcancel()
	_, err = vm.WaitForLog(wctx, regexp.MustCompile(`Reached target.*Multi-User`))
	if err == nil || !vm.Exited() {
		t.Fatalf("want the VM to power off, got %v (exited %v)", err, vm.Exited())
	}
	if !strings.Contains(err.Error(), "cnimatrix-initramfs: FATAL: root device /dev/vdz did not appear") {
		t.Errorf("error lacks the initramfs's message: %v", err)
	}
	t.Logf("%.1fs: %v", time.Since(vm.Started).Seconds(), err)
}

var machineIDRe = regexp.MustCompile(`cnimatrix-selftest: machine-id ([0-9a-f]{32})`)

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
