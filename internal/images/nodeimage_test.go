package images

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/cnimatrix/cnimatrix/internal/logx"
)

func TestNodeContainerdConfig(t *testing.T) {
	raw := nodeContainerdConfig("registry.k8s.io/pause:3.10.2")
	var cfg struct {
		Version int                       `toml:"version"`
		Plugins map[string]map[string]any `toml:"plugins"`
	}
	if _, err := toml.Decode(raw, &cfg); err != nil {
		t.Fatalf("config is not TOML: %v\n%s", err, raw)
	}
	if cfg.Version != 3 {
		t.Errorf("version = %d", cfg.Version)
	}
	imgs := cfg.Plugins["io.containerd.cri.v1.images"]
	if imgs["pinned_images"].(map[string]any)["sandbox"] != "registry.k8s.io/pause:3.10.2" {
		t.Errorf("sandbox image = %v", imgs["pinned_images"])
	}
	if imgs["registry"].(map[string]any)["config_path"] != "/etc/containerd/certs.d" {
		t.Errorf("registry = %v", imgs["registry"])
	}
	rt := cfg.Plugins["io.containerd.cri.v1.runtime"]
	if rt["tolerate_missing_hugetlb_controller"] != true || rt["restrict_oom_score_adj"] != false {
		t.Errorf("runtime = %v", rt)
	}
	runc := rt["containerd"].(map[string]any)["runtimes"].(map[string]any)["runc"].(map[string]any)
	if runc["base_runtime_spec"] != "/etc/containerd/cri-base.json" || runc["options"].(map[string]any)["SystemdCgroup"] != true {
		t.Errorf("runc runtime = %v", runc)
	}
	// kind's entrypoint edits these exact lines with sed.
	for _, line := range []string{`snapshotter = "overlayfs"`, `restrict_oom_score_adj = false`} {
		if !strings.Contains(raw, line) {
			t.Errorf("config lacks the line %q kind's entrypoint rewrites", line)
		}
	}
}

func TestParseControlPlaneImages(t *testing.T) {
	list := []string{
		"registry.k8s.io/kube-apiserver:v1.37.2", "registry.k8s.io/kube-controller-manager:v1.37.2",
		"registry.k8s.io/kube-scheduler:v1.37.2", "registry.k8s.io/kube-proxy:v1.37.2",
		"registry.k8s.io/coredns/coredns:v1.14.6", "registry.k8s.io/pause:3.10.2", "registry.k8s.io/etcd:3.7.0-0",
	}
	m, err := parseControlPlaneImages(list)
	if err != nil {
		t.Fatal(err)
	}
	if m["coredns"].TagStr() != "v1.14.6" || m["etcd"].TagStr() != "3.7.0-0" || m["pause"].String() != "registry.k8s.io/pause:3.10.2" {
		t.Errorf("parsed = %v", m)
	}
	if _, err := parseControlPlaneImages(list[1:]); err == nil || !strings.Contains(err.Error(), "kube-apiserver") {
		t.Errorf("missing apiserver: err = %v", err)
	}
}

func TestPrepareNodeSystemd(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"usr/lib/systemd/system/multi-user.target.wants", "usr/lib/systemd/system/sysinit.target.wants",
		"usr/lib/systemd/system/sockets.target.wants", "etc/systemd/system/timers.target.wants", "usr/sbin", "etc/systemd"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"usr/lib/systemd/system/multi-user.target.wants/getty.target",
		"usr/lib/systemd/system/sysinit.target.wants/systemd-tmpfiles-setup.service",
		"usr/lib/systemd/system/sysinit.target.wants/systemd-journald.service",
		"usr/lib/systemd/system/sockets.target.wants/systemd-udevd-control.socket",
		"usr/lib/systemd/system/sockets.target.wants/systemd-journald.socket",
		"etc/systemd/system/timers.target.wants/apt-daily.timer"} {
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := prepareNodeSystemd(root); err != nil {
		t.Fatal(err)
	}
	gone := []string{"usr/lib/systemd/system/multi-user.target.wants/getty.target",
		"usr/lib/systemd/system/sysinit.target.wants/systemd-tmpfiles-setup.service",
		"usr/lib/systemd/system/sockets.target.wants/systemd-udevd-control.socket",
		"etc/systemd/system/timers.target.wants/apt-daily.timer"}
	for _, f := range gone {
		if _, err := os.Lstat(filepath.Join(root, f)); !os.IsNotExist(err) {
			t.Errorf("%s still there", f)
		}
	}
	for _, f := range []string{"usr/lib/systemd/system/sysinit.target.wants/systemd-journald.service",
		"usr/lib/systemd/system/sockets.target.wants/systemd-journald.socket"} {
		if _, err := os.Lstat(filepath.Join(root, f)); err != nil {
			t.Errorf("%s removed: %v", f, err)
		}
	}
	links := map[string]string{
		"etc/systemd/system/multi-user.target.wants/kubelet.service":          "/etc/systemd/system/kubelet.service",
		"etc/systemd/system/multi-user.target.wants/containerd.service":       "/etc/systemd/system/containerd.service",
		"etc/systemd/system/multi-user.target.wants/undo-mount-hacks.service": "/etc/systemd/system/undo-mount-hacks.service",
		"etc/systemd/system/systemd-binfmt.service":                           "/dev/null",
		"usr/sbin/init": "/usr/lib/systemd/systemd",
	}
	for l, want := range links {
		if got, err := os.Readlink(filepath.Join(root, l)); err != nil || got != want {
			t.Errorf("%s -> %q (%v), want %q", l, got, err, want)
		}
	}
	j, _ := os.ReadFile(filepath.Join(root, "etc/systemd/journald.conf"))
	if !strings.Contains(string(j), "ReadKMsg=no") {
		t.Errorf("journald.conf = %q", j)
	}
}

func TestKindNodeFiles(t *testing.T) {
	c := &Cache{Dir: t.TempDir(), Log: logx.Discard()}
	dir, err := c.kindBaseFiles(context.Background())
	if err != nil {
		t.Skipf("kind module not available: %v", err)
	}
	files, err := kindNodeFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"usr/local/bin/entrypoint": false, "kind/bin/mount-product-files.sh": false,
		"kind/bin/undo-mount-hacks.sh": false, "etc/systemd/system/kubelet.service.d/10-kubeadm.conf": false,
		"etc/sysctl.d/10-network-magic.conf": false}
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(dir, f.src)); err != nil {
			t.Error(err)
		}
		if _, ok := want[f.dst]; ok {
			want[f.dst] = true
		}
		if strings.HasPrefix(f.dst, "kind/bin/") && f.mode != 0o755 {
			t.Errorf("%s mode %o", f.dst, f.mode)
		}
	}
	for f, ok := range want {
		if !ok {
			t.Errorf("%s not installed", f)
		}
	}
}

// TestNodeImage builds the v1.37.2 node image for the host's arch (cold: all
// of Kubernetes, containerd, etcd, CoreDNS, a Debian rootfs; warm: seconds)
// and checks what kind relies on in the loaded image.
func TestNodeImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a node image and needs Docker")
	}
	if err := exec.Command("docker", "info").Run(); err != nil {
		t.Skipf("docker not available: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Minute)
	defer cancel()
	c, err := NewCache(DefaultCacheDir(), logx.New(os.Stderr, testing.Verbose()))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	ref, err := c.NodeImage(ctx, "v1.37.2", runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first call: %s in %s", ref, time.Since(t0).Truncate(time.Millisecond))
	t1 := time.Now()
	ref2, err := c.NodeImage(ctx, "v1.37.2", runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	warm := time.Since(t1)
	t.Logf("second call: %s in %s", ref2, warm.Truncate(time.Millisecond))
	if ref2 != ref {
		t.Errorf("second call gave %s, first %s", ref2, ref)
	}
	if warm > 10*time.Second {
		t.Errorf("warm call took %s, want < 10s", warm)
	}
	out, err := exec.Command("docker", "image", "inspect", ref).Output()
	if err != nil {
		t.Fatal(err)
	}
	var info []struct {
		Architecture string
		Config       struct {
			Entrypoint []string
			Env        []string
			StopSignal string
		}
	}
	if err := json.Unmarshal(out, &info); err != nil || len(info) != 1 {
		t.Fatalf("inspect: %v", err)
	}
	cfg := info[0].Config
	if info[0].Architecture != runtime.GOARCH || strings.Join(cfg.Entrypoint, " ") != "/usr/local/bin/entrypoint /sbin/init" ||
		cfg.StopSignal != "SIGRTMIN+3" || !strings.Contains(strings.Join(cfg.Env, " "), "container=docker") {
		t.Errorf("image config = %+v arch %s", cfg, info[0].Architecture)
	}
	// Files kind reads or runs, checked without booting the node.
	script := `set -e
cat /kind/version
test -x /usr/local/bin/containerd && test -x /usr/local/bin/ctr && test -x /usr/local/bin/crictl
test -x /usr/bin/kubeadm && test -x /usr/bin/kubelet && test -x /usr/bin/kubectl
test -x /usr/sbin/runc && test -x /opt/cni/bin/host-local && test -x /opt/cni/bin/loopback
test -L /etc/systemd/system/multi-user.target.wants/kubelet.service
jq -e '.hooks.createContainer[-1].path == "/kind/bin/mount-product-files.sh"' /etc/containerd/cri-base.json >/dev/null
test -s /kind/manifests/default-storage.yaml
ls /var/lib/containerd/io.containerd.content.v1.content/blobs/sha256 | wc -l
`
	out, err = exec.Command("docker", "run", "--rm", "--entrypoint", "bash", ref, "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("node image contents: %v\n%s", err, out)
	}
	t.Logf("node image contents:\n%s", out)
}
