package qemu

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/hostcmd"
)

// VMOptions describe one VM.
type VMOptions struct {
	// Name names the VM (QEMU's -name, the default MAC address).
	Name string
	// CPUs and MemoryMB default to 2 and 2048.
	CPUs     int
	MemoryMB int
	// Net is "" or "user" for QEMU user-mode networking (10.0.2.15/24,
	// gateway 10.0.2.2, no inbound connections), or the name of an
	// existing tap device (e.g. one enslaved to a Docker network's bridge).
	Net string
	// MAC of the NIC; default derived from Name.
	MAC string
	// SerialLog is the file the serial console is written to (required).
	SerialLog string
	// KernelArgs are appended to the kernel command line (see
	// NodeConfig.KernelArgs).
	KernelArgs []string
	// StateDir holds the VM's overlay disk and QMP socket; default a new
	// temporary directory. It is removed by Stop.
	StateDir string
	// AgentToken, when set, is the token cnimatrix-agent requires. The
	// guest reads it from the fw_cfg file AgentTokenFwCfg: root-only in
	// sysfs and masked in every unprivileged container, unlike the kernel
	// command line. On the host it is a 0600 file in StateDir, never a
	// QEMU argument (which `ps` shows).
	AgentToken string
}

// AgentTokenFwCfg is the fw_cfg name of the agent's token; the guest sees
// it at /sys/firmware/qemu_fw_cfg/by_name/<name>/raw.
const AgentTokenFwCfg = "opt/cnimatrix/agent-token"

var tokenRe = regexp.MustCompile(`^[A-Za-z0-9]{16,64}$`)

// VM is a running QEMU virtual machine.
type VM struct {
	Name      string
	SerialLog string
	// Started is when the QEMU process started.
	Started time.Time

	dir     string
	qmp     string
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error

	stopOnce sync.Once
	stopErr  error
}

// baseKernelArgs boot the disk through its initramfs. net.ifnames=0 keeps
// the NIC eth0, which the node unit configures.
var baseKernelArgs = []string{"console=ttyAMA0", "root=/dev/vda", "rootfstype=ext4", "rw", "net.ifnames=0", "panic=-1"}

// Boot starts a VM from disk with its own copy-on-write overlay of the disk
// image. It returns once QEMU runs; use WaitForLog to wait for the guest.
func Boot(ctx context.Context, disk *Disk, opts VMOptions) (*VM, error) {
	if opts.Name == "" {
		return nil, errors.New("boot VM: no name")
	}
	if opts.SerialLog == "" {
		return nil, fmt.Errorf("boot VM %s: no serial log file", opts.Name)
	}
	if opts.CPUs == 0 {
		opts.CPUs = 2
	}
	if opts.MemoryMB == 0 {
		opts.MemoryMB = 2048
	}
	if opts.MAC == "" {
		opts.MAC = macFor(opts.Name)
	}
	qemuBin, err := exec.LookPath("qemu-system-aarch64")
	if err != nil {
		return nil, fmt.Errorf("boot VM %s: qemu-system-aarch64 not found (apt-get install qemu-system-arm): %w", opts.Name, err)
	}
	dir := opts.StateDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "cnimatrix-vm-"+opts.Name+"-"); err != nil {
			return nil, fmt.Errorf("boot VM %s: %w", opts.Name, err)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("boot VM %s: %w", opts.Name, err)
	}
	var qmpDir string
	fail := func(err error) (*VM, error) {
		_ = os.RemoveAll(dir)
		if qmpDir != "" {
			_ = os.RemoveAll(qmpDir)
		}
		return nil, fmt.Errorf("boot VM %s: %w", opts.Name, err)
	}
	overlay := filepath.Join(dir, "overlay.qcow2")
	if err := hostcmd.Run(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-b", disk.Image, "-F", "raw", overlay); err != nil {
		return fail(fmt.Errorf("overlay (qemu-img is in qemu-utils): %w", err))
	}
	if err := os.MkdirAll(filepath.Dir(opts.SerialLog), 0o755); err != nil {
		return fail(err)
	}
	// A fresh log, so WaitForLog never matches an earlier boot.
	if err := os.WriteFile(opts.SerialLog, nil, 0o644); err != nil {
		return fail(err)
	}
	// A unix socket path must fit in 108 bytes, which a state dir under a
	// deep work dir may not: the socket gets a short directory of its own.
	if qmpDir, err = os.MkdirTemp("", "cmxqmp-"); err != nil {
		return fail(err)
	}
	qmp := filepath.Join(qmpDir, "qmp.sock")
	var fwCfg []string
	if opts.AgentToken != "" {
		if !tokenRe.MatchString(opts.AgentToken) {
			return fail(errors.New("agent token must be 16-64 letters or digits"))
		}
		tokenFile := filepath.Join(dir, "agent-token")
		if err := os.WriteFile(tokenFile, []byte(opts.AgentToken), 0o600); err != nil {
			return fail(err)
		}
		fwCfg = []string{"-fw_cfg", "name=" + AgentTokenFwCfg + ",file=" + tokenFile}
	}
	args := []string{"-name", opts.Name, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"}
	args = append(args, accelArgs()...)
	args = append(args,
		"-smp", strconv.Itoa(opts.CPUs), "-m", strconv.Itoa(opts.MemoryMB),
		"-kernel", disk.Kernel, "-initrd", disk.Initrd,
		"-append", strings.Join(append(append([]string{}, baseKernelArgs...), opts.KernelArgs...), " "),
		"-drive", "file="+overlay+",format=qcow2,if=virtio,cache=unsafe",
		"-chardev", "file,id=serial0,path="+opts.SerialLog, "-serial", "chardev:serial0",
		"-qmp", "unix:"+qmp+",server=on,wait=off",
		"-device", "virtio-rng-pci",
	)
	args = append(args, fwCfg...)
	switch opts.Net {
	case "", "user":
		args = append(args, "-netdev", "user,id=n0")
	default:
		args = append(args, "-netdev", "tap,id=n0,ifname="+opts.Net+",script=no,downscript=no")
	}
	args = append(args, "-device", "virtio-net-pci,netdev=n0,romfile=,mac="+opts.MAC)

	qlog, err := os.Create(filepath.Join(dir, "qemu.log"))
	if err != nil {
		return fail(err)
	}
	defer qlog.Close()
	cmd := exec.Command(qemuBin, args...)
	cmd.Stdout, cmd.Stderr = qlog, qlog
	// Own process group: the VM outlives ctx and is ended by Stop only.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("start qemu: %w", err))
	}
	vm := &VM{Name: opts.Name, SerialLog: opts.SerialLog, Started: time.Now(), dir: dir, qmp: qmp, cmd: cmd, exited: make(chan struct{})}
	go func() {
		vm.waitErr = cmd.Wait()
		close(vm.exited)
	}()
	// QEMU fails fast on bad arguments or a busy tap; catch that here.
	select {
	case <-vm.exited:
		b, _ := os.ReadFile(filepath.Join(dir, "qemu.log"))
		return fail(fmt.Errorf("qemu exited at once (%v): %s", vm.waitErr, hostcmd.LastLines(string(b), 10)))
	case <-time.After(300 * time.Millisecond):
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-vm.exited
		return fail(ctx.Err())
	}
	return vm, nil
}

// accelArgs is KVM on an arm64 host that has it, else TCG emulating a
// modern CPU; pauth-impdef makes pointer authentication (used by Debian's
// arm64 userland) cheap to emulate.
func accelArgs() []string {
	if runtime.GOARCH == "arm64" {
		if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err == nil {
			f.Close()
			return []string{"-M", "virt", "-enable-kvm", "-cpu", "host"}
		}
	}
	return []string{"-M", "virt", "-accel", "tcg", "-cpu", "max,pauth-impdef=on"}
}

// macFor derives a stable locally administered MAC address from name.
func macFor(name string) string {
	h := sha256.Sum256([]byte(name))
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", h[0], h[1], h[2])
}

// Exited reports whether QEMU has ended.
func (vm *VM) Exited() bool {
	select {
	case <-vm.exited:
		return true
	default:
		return false
	}
}

// WaitForLog polls the serial log, with backoff, until re matches, and
// returns the matching line. It fails when ctx ends or QEMU exits.
func (vm *VM) WaitForLog(ctx context.Context, re *regexp.Regexp) (string, error) {
	delay := 100 * time.Millisecond
	for {
		b, err := os.ReadFile(vm.SerialLog)
		if err != nil {
			return "", fmt.Errorf("VM %s: %w", vm.Name, err)
		}
		if loc := re.FindIndex(b); loc != nil {
			start := strings.LastIndexByte(string(b[:loc[0]]), '\n') + 1
			end := len(b)
			if i := strings.IndexByte(string(b[loc[1]:]), '\n'); i >= 0 {
				end = loc[1] + i
			}
			return strings.TrimRight(string(b[start:end]), "\r"), nil
		}
		if vm.Exited() {
			return "", fmt.Errorf("VM %s exited (%v) before %q appeared; console:\n%s", vm.Name, vm.waitErr, re, hostcmd.LastLines(string(b), 20))
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("VM %s: waiting for %q: %w; console:\n%s", vm.Name, re, ctx.Err(), hostcmd.LastLines(string(b), 20))
		case <-vm.exited:
		case <-time.After(delay):
		}
		delay = min(delay*3/2, 2*time.Second)
	}
}

// Stop shuts the VM down: an ACPI power-button press through QMP, then
// SIGTERM, then SIGKILL, each given part of ctx's time (at most 60 s for the
// guest to power off). It removes the VM's state directory; the serial log
// stays. Calling it again returns the first result.
func (vm *VM) Stop(ctx context.Context) error {
	vm.stopOnce.Do(func() { vm.stopErr = vm.stop(ctx) })
	return vm.stopErr
}

func (vm *VM) removeState() {
	_ = os.RemoveAll(vm.dir)
	_ = os.RemoveAll(filepath.Dir(vm.qmp))
}

// Kill ends QEMU at once (for VMs that are thrown away) and removes the
// state directory. Calling Stop or Kill again returns the first result.
func (vm *VM) Kill(ctx context.Context) error {
	vm.stopOnce.Do(func() {
		defer vm.removeState()
		if vm.Exited() {
			return
		}
		_ = vm.cmd.Process.Kill()
		select {
		case <-vm.exited:
		case <-ctx.Done():
			vm.stopErr = fmt.Errorf("kill VM %s: %w", vm.Name, ctx.Err())
		}
	})
	return vm.stopErr
}

func (vm *VM) stop(ctx context.Context) error {
	defer vm.removeState()
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-vm.exited:
			return true
		case <-t.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
	if vm.Exited() {
		return nil
	}
	if err := qmpCommand(ctx, vm.qmp, "system_powerdown"); err == nil && wait(60*time.Second) {
		return nil
	}
	_ = vm.cmd.Process.Signal(syscall.SIGTERM)
	if wait(10 * time.Second) {
		return nil
	}
	_ = vm.cmd.Process.Kill()
	<-vm.exited
	if ctx.Err() != nil {
		return fmt.Errorf("stop VM %s: killed: %w", vm.Name, ctx.Err())
	}
	return nil
}

// qmpCommand runs one QMP command without arguments.
func qmpCommand(ctx context.Context, sock, command string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = conn.SetDeadline(deadline)
	r := bufio.NewReader(conn)
	// Greeting, then capabilities negotiation, then the command. Events
	// may arrive between replies; a reply has "return" or "error".
	if _, err := r.ReadBytes('\n'); err != nil {
		return fmt.Errorf("qmp greeting: %w", err)
	}
	for _, c := range []string{"qmp_capabilities", command} {
		if _, err := fmt.Fprintf(conn, `{"execute":%q}`+"\n", c); err != nil {
			return err
		}
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return fmt.Errorf("qmp %s: %w", c, err)
			}
			var msg struct {
				Return json.RawMessage `json:"return"`
				Error  *struct {
					Desc string `json:"desc"`
				} `json:"error"`
			}
			if err := json.Unmarshal(line, &msg); err != nil {
				return fmt.Errorf("qmp %s: %w", c, err)
			}
			if msg.Error != nil {
				return fmt.Errorf("qmp %s: %s", c, msg.Error.Desc)
			}
			if msg.Return != nil {
				break
			}
		}
	}
	return nil
}

// AddTap creates tap device name, enslaved to the existing Linux bridge
// (e.g. br-<id> of a Docker network) and up, for VMOptions.Net.
func AddTap(ctx context.Context, name, bridge string) error {
	if len(name) > 15 {
		return fmt.Errorf("tap %s: name longer than 15 bytes", name)
	}
	for _, args := range [][]string{
		{"tuntap", "add", "dev", name, "mode", "tap"},
		{"link", "set", name, "master", bridge},
		{"link", "set", name, "up"},
	} {
		if err := hostcmd.Run(ctx, "ip", args...); err != nil {
			_ = DeleteTap(context.WithoutCancel(ctx), name)
			return fmt.Errorf("tap %s on %s: %w", name, bridge, err)
		}
	}
	return nil
}

// DeleteTap removes a tap device; a missing one is not an error.
func DeleteTap(ctx context.Context, name string) error {
	if _, err := net.InterfaceByName(name); err != nil {
		return nil
	}
	if err := hostcmd.Run(ctx, "ip", "tuntap", "del", "dev", name, "mode", "tap"); err != nil {
		return fmt.Errorf("delete tap %s: %w", name, err)
	}
	return nil
}
