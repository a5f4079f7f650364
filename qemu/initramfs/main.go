// Command initramfs is the /init of the VM disks' initramfs. Debian's arm64
// kernel has virtio and ext4 as modules, and generating Debian's own
// initramfs under emulation takes many minutes, so this small static program
// does the only work an initramfs has here: load the modules listed in
// /modules.list (already in dependency order), mount the root disk and hand
// over to its /sbin/init.
//
// It uses the standard library alone: BuildDisk compiles it in a throwaway
// module with no dependencies.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

func main() {
	// run returns only on failure: on success it has exec'd the real init.
	err := run()
	fmt.Fprintf(os.Stderr, "cnimatrix-initramfs: FATAL: %v\n", err)
	// PID 1 must not exit (the kernel would panic); powering off ends the
	// VM so the caller sees it.
	syscall.Sync()
	time.Sleep(time.Second)
	_ = syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

func run() error {
	for _, m := range []struct{ src, dst, fstype string }{
		{"devtmpfs", "/dev", "devtmpfs"},
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
	} {
		_ = os.MkdirAll(m.dst, 0o755)
		if err := syscall.Mount(m.src, m.dst, m.fstype, 0, ""); err != nil && !errors.Is(err, syscall.EBUSY) {
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	args, err := cmdline()
	if err != nil {
		return err
	}
	if err := loadModules("/modules.list"); err != nil {
		return err
	}
	root := valueOr(args, "root", "/dev/vda")
	fstype := valueOr(args, "rootfstype", "ext4")
	flags := uintptr(0)
	if _, ro := args["ro"]; ro {
		flags |= syscall.MS_RDONLY
	}
	if err := waitFor(root, 30*time.Second); err != nil {
		return err
	}
	if err := os.MkdirAll("/newroot", 0o755); err != nil {
		return err
	}
	if err := syscall.Mount(root, "/newroot", fstype, flags, ""); err != nil {
		return fmt.Errorf("mount %s (%s) on /newroot: %w", root, fstype, err)
	}
	for _, d := range []string{"/dev", "/proc", "/sys"} {
		if err := syscall.Mount(d, "/newroot"+d, "", syscall.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move %s: %w", d, err)
		}
	}
	init := valueOr(args, "init", "/sbin/init")
	fmt.Printf("cnimatrix-initramfs: %s mounted, starting %s\n", root, init)
	// switch_root: make the new root "/" and forget the initramfs (its
	// few megabytes stay allocated; not worth a recursive delete here).
	if err := syscall.Chdir("/newroot"); err != nil {
		return err
	}
	if err := syscall.Mount(".", "/", "", syscall.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move root: %w", err)
	}
	if err := syscall.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := syscall.Chdir("/"); err != nil {
		return err
	}
	return fmt.Errorf("exec %s: %w", init, syscall.Exec(init, []string{init}, os.Environ()))
}

// cmdline parses /proc/cmdline into key -> value ("" for bare words).
func cmdline() (map[string]string, error) {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, f := range strings.Fields(string(b)) {
		k, v, _ := strings.Cut(f, "=")
		out[k] = v
	}
	return out, nil
}

func valueOr(m map[string]string, k, def string) string {
	if v := m[k]; v != "" {
		return v
	}
	return def
}

// loadModules loads each listed module file; one the kernel already has
// (built in, or loaded as a dependency) is not an error.
func loadModules(list string) error {
	f, err := os.Open(list)
	if err != nil {
		return fmt.Errorf("module list: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name := strings.TrimSpace(sc.Text())
		if name == "" {
			continue
		}
		if err := finitModule(name); err != nil && !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("load module %s: %w", name, err)
		}
	}
	return sc.Err()
}

func finitModule(path string) error {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	params, err := syscall.BytePtrFromString("")
	if err != nil {
		return err
	}
	_, _, errno := syscall.Syscall(sysFinitModule, uintptr(fd), uintptr(unsafe.Pointer(params)), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// waitFor polls, with backoff, until the block device appears: virtio
// devices are probed asynchronously after their module loads.
func waitFor(dev string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	delay := 10 * time.Millisecond
	for {
		if _, err := os.Stat(dev); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("root device %s did not appear within %s", dev, timeout)
		}
		time.Sleep(delay)
		delay = min(2*delay, 500*time.Millisecond)
	}
}
