package images

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestEtcdModuleVersion(t *testing.T) {
	for in, want := range map[string]string{"3.7.0-0": "v3.7.0", "3.5.24-0": "v3.5.24", "3.6.1": "v3.6.1", "v3.7.0-1": "v3.7.0"} {
		if got, err := etcdModuleVersion(in); err != nil || got != want {
			t.Errorf("etcdModuleVersion(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "3.7", "latest", "3.7.0-rc.0", "2.3.8-0"} {
		if got, err := etcdModuleVersion(bad); err == nil {
			t.Errorf("etcdModuleVersion(%q) = %q, want an error", bad, got)
		}
	}
}

func TestCoreDNSModuleVersion(t *testing.T) {
	for in, want := range map[string]string{"v1.14.6": "v1.14.6", "1.12.0": "v1.12.0"} {
		if got, err := coreDNSModuleVersion(in); err != nil || got != want {
			t.Errorf("coreDNSModuleVersion(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "v1.14", "latest", "v1.14.6-rc.1"} {
		if got, err := coreDNSModuleVersion(bad); err == nil {
			t.Errorf("coreDNSModuleVersion(%q) = %q, want an error", bad, got)
		}
	}
}

func TestCoreDNSMissingVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("asks the Go module proxy")
	}
	_, err := goBuildTestCache(t).CoreDNS(context.Background(), "v1.99.0", runtime.GOARCH)
	if err == nil || !strings.Contains(err.Error(), "github.com/coredns/coredns@v1.99.0") {
		t.Fatalf("CoreDNS(v1.99.0) = %v, want an error naming github.com/coredns/coredns@v1.99.0", err)
	}
	t.Log(err)
}

// TestComponents builds etcd, coredns, containerd, crictl and pause for the
// host architecture (or $CNIMATRIX_TEST_ARCHES, e.g. "amd64 arm64"), checks
// each binary's ELF machine and, on the host arch, the version it reports.
// etcd and coredns are kubeadm v1.37.2's, or those kubeadm of
// $CNIMATRIX_KUBE_VERSION lists.
func TestComponents(t *testing.T) {
	if testing.Short() || os.Getenv("CNIMATRIX_SLOW") != "1" {
		t.Skip("set CNIMATRIX_SLOW=1 (and no -short): several minutes of builds when cold")
	}
	arches := strings.Fields(os.Getenv("CNIMATRIX_TEST_ARCHES"))
	if len(arches) == 0 {
		arches = []string{runtime.GOARCH}
	}
	c := goBuildTestCache(t)
	ctx := context.Background()
	etcdTag, corednsTag := "3.7.0-0", "v1.14.6" // kubeadm v1.37.2's
	if v := os.Getenv("CNIMATRIX_KUBE_VERSION"); v != "" {
		// The versions that Kubernetes release asks for, from its kubeadm.
		kubeadm, err := c.HostKubeadm(ctx, v)
		if err != nil {
			t.Fatal(err)
		}
		images, err := kubeadmImages(ctx, kubeadm, v)
		if err != nil {
			t.Fatal(err)
		}
		for _, img := range images {
			if tag, ok := strings.CutPrefix(img, "registry.k8s.io/etcd:"); ok {
				etcdTag = tag
			}
			if tag, ok := strings.CutPrefix(img, "registry.k8s.io/coredns/coredns:"); ok {
				corednsTag = tag
			}
		}
	}
	etcdVersion, _, _ := strings.Cut(etcdTag, "-")
	type component struct {
		name    string
		build   func(arch string) (string, error)
		version map[string]string // binary -> wanted substring of its version output
	}
	components := []component{
		{"etcd", func(a string) (string, error) { return c.Etcd(ctx, etcdTag, a) },
			map[string]string{"etcd": "etcd Version: " + etcdVersion, "etcdctl": "etcdctl version: " + etcdVersion}},
		{"coredns", func(a string) (string, error) { return c.CoreDNS(ctx, corednsTag, a) },
			map[string]string{"coredns": "CoreDNS-" + strings.TrimPrefix(corednsTag, "v")}},
		{"containerd", func(a string) (string, error) { return c.Containerd(ctx, a) },
			map[string]string{"containerd": "containerd github.com/containerd/containerd/v2 " + ContainerdVersion,
				"ctr": "ctr github.com/containerd/containerd/v2 " + ContainerdVersion, "containerd-shim-runc-v2": ContainerdVersion}},
		{"crictl", func(a string) (string, error) { return c.Crictl(ctx, a) },
			map[string]string{"crictl": "crictl version " + CrictlVersion}},
		{"pause", func(a string) (string, error) { return c.Pause(ctx, a) },
			map[string]string{"pause": "cnimatrix pause " + PauseVersion}},
	}
	for _, arch := range arches {
		for _, comp := range components {
			t.Run(comp.name+"-"+arch, func(t *testing.T) {
				dir := buildTwice(t, comp.name+" "+arch, func() (string, error) { return comp.build(arch) })
				got := elfMachines(t, dir)
				if len(got) != len(comp.version) {
					t.Errorf("binaries %v, want %d", got, len(comp.version))
				}
				for bin, want := range comp.version {
					if got[bin] != elfMachineOfArch[arch] {
						t.Errorf("%s: machine %v, want %v", bin, got[bin], elfMachineOfArch[arch])
					}
					if arch != runtime.GOARCH {
						continue
					}
					out, err := exec.Command(filepath.Join(dir, bin), versionArgs(bin)...).CombinedOutput()
					if err != nil || !strings.Contains(string(out), want) {
						t.Errorf("%s %v: %q, %v; want %q", bin, versionArgs(bin), out, err, want)
					}
				}
			})
		}
	}
}

func versionArgs(bin string) []string {
	switch bin {
	case "etcdctl":
		return []string{"version"}
	case "coredns", "containerd-shim-runc-v2":
		return []string{"-version"}
	case "pause":
		return []string{"-v"}
	}
	return []string{"--version"}
}

// TestPauseReapsAsPID1 runs pause as PID 1 of a new PID namespace, orphans a
// process into that namespace and checks that pause reaps it when it exits.
func TestPauseReapsAsPID1(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs pause")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for a PID namespace")
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		t.Skip("needs nsenter")
	}
	dir, err := goBuildTestCache(t).Pause(context.Background(), runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(dir, "pause"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start in a new PID namespace: %v", err)
	}
	pid := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() { _ = cmd.Process.Kill() }()
	waitFor(t, "pause to handle SIGCHLD and SIGTERM", func() bool {
		return catches(pid, syscall.SIGCHLD) && catches(pid, syscall.SIGTERM)
	})

	// The outer shell exits at once, so the sleep is orphaned to the
	// namespace's PID 1, pause, which must reap it when it exits. The sleep
	// must not hold our output pipe, or we would only return once it is gone.
	out, err := exec.Command(nsenter, "-t", strconv.Itoa(pid), "-p", "--",
		"sh", "-c", "sleep 1 </dev/null >/dev/null 2>&1 & exit 0").CombinedOutput()
	if err != nil {
		t.Fatalf("nsenter: %v: %s", err, out)
	}
	waitFor(t, "the orphan to be adopted by pause", func() bool { return len(children(pid)) > 0 })
	waitFor(t, "pause to reap the orphan", func() bool { return len(children(pid)) == 0 })

	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("pause after SIGTERM: %v, want exit 0", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("pause ignored SIGTERM")
	}
}

// catches reports whether pid has a handler for sig (SigCgt in /proc status).
func catches(pid int, sig syscall.Signal) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "SigCgt:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && mask&(1<<(uint(sig)-1)) != 0
		}
	}
	return false
}

// children lists the processes (zombies included) whose parent is pid.
func children(pid int) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		if strings.Contains(string(data), fmt.Sprintf("\nPPid:\t%d\n", pid)) {
			out = append(out, e.Name())
		}
	}
	return out
}

// waitFor polls cond with a growing delay for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for delay := 10 * time.Millisecond; !cond(); delay = min(delay*2, 500*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(delay)
	}
}
