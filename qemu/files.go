package qemu

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// containerdConfig is the VM's /etc/containerd/config.toml (version 3):
// systemd cgroups, the preloaded pause image as sandbox, registry hosts
// under /etc/containerd/certs.d for mirrors.
func containerdConfig(sandboxImage string) string {
	return `# cnimatrix qemu node: containerd 2 configuration (version 3)
version = 3

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "` + sandboxImage + `"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "/etc/containerd/certs.d"

[plugins."io.containerd.cri.v1.runtime"]
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        SystemdCgroup = true
`
}

const containerdUnit = `[Unit]
Description=containerd container runtime
After=network.target local-fs.target
Documentation=https://containerd.io

[Service]
ExecStartPre=-/usr/sbin/modprobe overlay
ExecStart=/usr/local/bin/containerd
Type=notify
# Under TCG on a busy host containerd took more than systemd's default 90 s
# to report ready (seen at an emulation factor of 40): the start job failed
# and the join's setup with it. The harness's own deadlines bound the wait.
TimeoutStartSec=10min
Delegate=yes
KillMode=process
Restart=always
RestartSec=2
LimitNPROC=infinity
LimitCORE=infinity
LimitNOFILE=infinity
TasksMax=infinity
OOMScoreAdjust=-999

[Install]
WantedBy=multi-user.target
`

// kubeletUnit starts nothing until kubeadm has written the kubelet's
// configuration: an unconfigured kubelet would only crash-loop, which under
// TCG costs a core. kubeadm join restarts the unit once the file exists.
const kubeletUnit = `[Unit]
Description=kubelet: The Kubernetes Node Agent
Wants=network-online.target containerd.service
After=network-online.target containerd.service
ConditionPathExists=/var/lib/kubelet/config.yaml

[Service]
ExecStart=/usr/bin/kubelet
Restart=always
RestartSec=2
StartLimitInterval=0

[Install]
WantedBy=multi-user.target
`

// kubeletDropIn is the kubeadm-style drop-in: kubeadm writes the bootstrap
// kubeconfig, config.yaml and kubeadm-flags.env; /etc/default/kubelet holds
// the node's own extra flags.
const kubeletDropIn = `[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
`

// kubeletDefaults: a kind cluster's KubeletConfiguration sets cgroupRoot
// /kubelet (for nesting in node containers); on a VM that cgroup lacks
// controllers and the kubelet exits, so the VM's kubelet uses the root.
const kubeletDefaults = `KUBELET_EXTRA_ARGS=--cgroup-root=/
`

// nodeSetupScript applies the per-VM settings of the kernel command line
// (see NodeConfig) on every boot, before the network is considered up.
const nodeSetupScript = `#!/bin/bash
# cnimatrix: per-VM settings from the kernel command line, applied each boot.
set -u
arg() {
  local w
  for w in $(cat /proc/cmdline); do
    case "$w" in "$1="*) printf '%s' "${w#*=}"; return 0 ;; esac
  done
  return 1
}
say() { echo "cnimatrix-node: $*"; }

if h=$(arg cnimatrix.hostname); then
  echo "$h" >/etc/hostname
  hostname "$h"
fi
h=$(hostname)
{
  echo "127.0.0.1 localhost"
  echo "127.0.1.1 $h"
  echo "::1 localhost ip6-localhost ip6-loopback"
  if e=$(arg cnimatrix.hosts); then echo "$e" | base64 -d; echo; fi
} >/etc/hosts

dev=eth0
ip link set lo up
ip link set "$dev" up || say "no $dev"
if a=$(arg cnimatrix.ip); then
  ip addr flush dev "$dev"
  ip addr add "$a" dev "$dev"
  if g=$(arg cnimatrix.gw); then ip route replace default via "$g" dev "$dev"; fi
fi
if d=$(arg cnimatrix.dns); then
  : >/etc/resolv.conf
  for s in ${d//,/ }; do echo "nameserver $s" >>/etc/resolv.conf; done
elif g=$(arg cnimatrix.gw); then
  echo "nameserver $g" >/etc/resolv.conf
fi
say "hostname $h, $dev $(ip -4 -o addr show dev "$dev" | awk '{print $4}' | tr '\n' ' ')"
`

// nodeSetupUnit runs as early as it can: the initramfs has loaded
// virtio_net, so eth0 exists before systemd starts, and waiting for udev
// to announce it cost ~20 s of every boot under TCG.
const nodeSetupUnit = `[Unit]
Description=cnimatrix per-VM settings (kernel command line)
DefaultDependencies=no
Before=network.target network-online.target containerd.service kubelet.service cnimatrix-agent.service
Wants=network.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/cnimatrix-node-setup
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target network-online.target
`

// joinScript runs the kubeadm join command given (base64) on the kernel
// command line, once: a joined node has /etc/kubernetes/kubelet.conf.
const joinScript = `#!/bin/bash
set -u
for w in $(cat /proc/cmdline); do
  case "$w" in cnimatrix.join=*) cmd=$(printf '%s' "${w#*=}" | base64 -d) ;; esac
done
[ -n "${cmd:-}" ] || exit 0
echo "cnimatrix-join: running kubeadm join"
if bash -c "$cmd"; then
  echo "cnimatrix-join: joined"
else
  rc=$?
  echo "cnimatrix-join: failed ($rc)"
  exit $rc
fi
`

const joinUnit = `[Unit]
Description=cnimatrix kubeadm join (kernel command line)
Wants=network-online.target containerd.service
After=network-online.target containerd.service cnimatrix-node.service
ConditionPathExists=!/etc/kubernetes/kubelet.conf
ConditionKernelCommandLine=cnimatrix.join

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/cnimatrix-join
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=15min

[Install]
WantedBy=multi-user.target
`

// readyUnit prints the marker VM.WaitForLog looks for once containerd runs.
const readyUnit = `[Unit]
Description=cnimatrix boot marker
After=containerd.service cnimatrix-node.service
Wants=containerd.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'echo "cnimatrix-node: ready, kernel $(uname -r) $(uname -m), up $(cut -d" " -f1 /proc/uptime)s"'
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
`

// selftestScript proves the kernel is a real aarch64 one: bash reports an
// exec failure itself instead of falling back to a shell as execvp does.
const selftestScript = `#!/bin/bash
echo "cnimatrix-selftest: uname -m: $(uname -m)"
out=$(bash -c /usr/local/bin/hello-amd64 2>&1)
echo "cnimatrix-selftest: hello-amd64 exit $?: $out"
echo "cnimatrix-selftest: modules: $(cut -d' ' -f1 /proc/modules | grep -E '^(overlay|br_netfilter|vxlan|virtio_net|ext4)$' | sort | tr '\n' ' ')"
echo "cnimatrix-selftest: sysctl: $(sysctl -n net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables | tr '\n' ' ')"
for i in $(seq 1 60); do ctr version >/dev/null 2>&1 && break; sleep 1; done
echo "cnimatrix-selftest: images: $(ctr -n k8s.io images ls -q | sort | tr '\n' ' ')"
echo "cnimatrix-selftest: containerd $(containerd --version | cut -d' ' -f3), runc $(runc --version | head -1 | cut -d' ' -f3), kubelet $(kubelet --version | cut -d' ' -f2)"
gw=$(ip -4 route show default | awk '{print $3; exit}')
if [ -n "$gw" ] && ping -c1 -W5 "$gw" >/dev/null 2>&1; then echo "cnimatrix-selftest: ping gateway $gw ok"; else echo "cnimatrix-selftest: ping gateway ${gw:-none} failed"; fi
echo "cnimatrix-selftest: machine-id $(cat /etc/machine-id)"
# Every extra /etc/hosts name from the command line must answer (peers may
# still be booting: retry for a minute).
for w in $(cat /proc/cmdline); do
  case "$w" in cnimatrix.hosts=*) names=$(printf '%s' "${w#*=}" | base64 -d | awk '{print $2}') ;; esac
done
for n in ${names:-}; do
  r=failed
  for i in $(seq 1 30); do if ping -c1 -W2 "$n" >/dev/null 2>&1; then r=ok; break; fi; sleep 1; done
  echo "cnimatrix-selftest: ping $n ($(getent hosts "$n" | awk '{print $1}')) $r"
done
# A container from a preloaded image: unpacked here (not at build time)
# and run by runc on this kernel.
kp=$(ctr -n k8s.io images ls -q | grep '/kube-proxy:' | head -1)
t0=$(date +%s%N)
v=$(ctr -n k8s.io run --rm "$kp" cnimatrix-selftest /usr/local/bin/kube-proxy --version 2>&1 | tail -1)
echo "cnimatrix-selftest: container kube-proxy --version: $v ($(( ($(date +%s%N) - t0) / 1000000 )) ms)"
echo "cnimatrix-selftest: failed units: $(systemctl --failed --no-legend --plain | cut -d' ' -f1 | tr '\n' ' ')"
`

const selftestUnit = `[Unit]
Description=cnimatrix self test
ConditionKernelCommandLine=cnimatrix.selftest=1
After=containerd.service systemd-modules-load.service systemd-sysctl.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/cnimatrix-selftest
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
`

// diskFiles are the generated text files of a disk (path -> content); they
// are part of the disk's key.
func diskFiles(sandboxImage string) map[string]string {
	return map[string]string{
		"etc/containerd/config.toml":                           containerdConfig(sandboxImage),
		"etc/crictl.yaml":                                      "runtime-endpoint: unix:///run/containerd/containerd.sock\nimage-endpoint: unix:///run/containerd/containerd.sock\n",
		"etc/systemd/system/containerd.service":                containerdUnit,
		"etc/systemd/system/kubelet.service":                   kubeletUnit,
		"etc/systemd/system/kubelet.service.d/10-kubeadm.conf": kubeletDropIn,
		"etc/default/kubelet":                                  kubeletDefaults,
		"etc/systemd/system/cnimatrix-node.service":            nodeSetupUnit,
		"etc/systemd/system/cnimatrix-join.service":            joinUnit,
		"etc/systemd/system/cnimatrix-ready.service":           readyUnit,
		"etc/systemd/system/cnimatrix-selftest.service":        selftestUnit,
		"etc/systemd/system/cnimatrix-agent.service":           agentUnit,
		"usr/local/sbin/cnimatrix-node-setup":                  nodeSetupScript,
		"usr/local/sbin/cnimatrix-join":                        joinScript,
		"usr/local/sbin/cnimatrix-selftest":                    selftestScript,
		"etc/modules-load.d/cnimatrix.conf":                    "# container networking\noverlay\nbr_netfilter\nvxlan\nip_tables\niptable_nat\niptable_filter\niptable_mangle\nnf_conntrack\nxt_conntrack\nnf_nat\nip6_tables\nip6table_nat\nip6table_filter\n",
		"etc/sysctl.d/90-cnimatrix.conf":                       "net.ipv4.ip_forward = 1\nnet.ipv6.conf.all.forwarding = 1\nnet.bridge.bridge-nf-call-iptables = 1\nnet.bridge.bridge-nf-call-ip6tables = 1\n",
		"etc/hostname":                                         "cnimatrix-node\n",
		"etc/fstab":                                            "# root is mounted read-write by the initramfs\n",
		// Empty: every VM gets its own machine ID at first boot.
		"etc/machine-id": "",
	}
}

// agentUnit runs cnimatrix-agent when the kernel command line enables it
// (booted by a provider, not by a self test); the token comes by fw_cfg.
//
// Like the node setup it does not wait for sysinit (udev): callers that
// need containerd start it (systemctl start waits for it).
const agentUnit = `[Unit]
Description=cnimatrix agent (commands from the host)
DefaultDependencies=no
After=cnimatrix-node.service
Wants=cnimatrix-node.service
ConditionKernelCommandLine=cnimatrix.agent

[Service]
ExecStart=/usr/local/bin/cnimatrix-agent serve
Restart=always
RestartSec=1
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
`

// enabledUnits are linked into multi-user.target.wants.
var enabledUnits = []string{"containerd.service", "kubelet.service", "cnimatrix-node.service", "cnimatrix-join.service", "cnimatrix-ready.service", "cnimatrix-selftest.service", "cnimatrix-agent.service"}

// maskedUnits cost CPU under TCG and do nothing useful on a throwaway node.
// The gettys too: nobody logs in (root has no password), and while a getty
// holds the serial console systemd stops printing unit status there, which
// is what callers watch.
var maskedUnits = []string{
	"apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "systemd-binfmt.service", "e2scrub_reap.service", "fstrim.timer",
	"serial-getty@ttyAMA0.service", "getty@tty1.service",
}

// installFiles puts binaries, configuration and units into root.
func installFiles(in *diskInputs, root string) error {
	bins := []struct{ src, dst string }{
		{filepath.Join(in.Containerd, "containerd"), "usr/local/bin/containerd"},
		{filepath.Join(in.Containerd, "containerd-shim-runc-v2"), "usr/local/bin/containerd-shim-runc-v2"},
		{filepath.Join(in.Containerd, "ctr"), "usr/local/bin/ctr"},
		{filepath.Join(in.Crictl, "crictl"), "usr/local/bin/crictl"},
		{filepath.Join(in.Kube, "kubeadm"), "usr/bin/kubeadm"},
		{filepath.Join(in.Kube, "kubelet"), "usr/bin/kubelet"},
		{filepath.Join(in.Kube, "kubectl"), "usr/bin/kubectl"},
		{in.Hello, "usr/local/bin/hello-amd64"},
		{in.Agent, "usr/local/bin/cnimatrix-agent"},
	}
	for _, b := range bins {
		data, err := os.ReadFile(b.src)
		if err != nil {
			return err
		}
		if err := writeInto(root, b.dst, data, 0o755); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(in.Files))
	for p := range in.Files {
		names = append(names, p)
	}
	slices.Sort(names)
	for _, p := range names {
		mode := fs.FileMode(0o644)
		if strings.HasPrefix(p, "usr/local/sbin/") {
			mode = 0o755
		}
		if err := writeInto(root, p, []byte(in.Files[p]), mode); err != nil {
			return err
		}
	}
	// Debian's plugins are in /usr/lib/cni; kubelet and CNI installers use
	// /opt/cni/bin. Per-file links leave room for a CNI's own plugins.
	plugins, err := os.ReadDir(filepath.Join(root, "usr/lib/cni"))
	if err != nil {
		return fmt.Errorf("debian CNI plugins: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(root, "opt/cni/bin"), 0o755); err != nil {
		return err
	}
	for _, p := range plugins {
		if err := os.Symlink("/usr/lib/cni/"+p.Name(), filepath.Join(root, "opt/cni/bin", p.Name())); err != nil {
			return err
		}
	}
	for _, d := range []string{"etc/kubernetes/manifests", "etc/containerd/certs.d", "etc/cni/net.d", "var/lib/kubelet"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	wants := filepath.Join(root, "etc/systemd/system/multi-user.target.wants")
	if err := os.MkdirAll(wants, 0o755); err != nil {
		return err
	}
	for _, u := range enabledUnits {
		if err := relink("/etc/systemd/system/"+u, filepath.Join(wants, u)); err != nil {
			return err
		}
	}
	for _, u := range maskedUnits {
		if err := relink("/dev/null", filepath.Join(root, "etc/systemd/system", u)); err != nil {
			return err
		}
	}
	return nil
}

func relink(target, link string) error {
	if err := os.Remove(link); err != nil && !os.IsNotExist(err) {
		return err
	}
	return os.Symlink(target, link)
}

// writeInto writes rel inside root, through the rootfs's relative /usr
// links, never outside root.
func writeInto(root, rel string, data []byte, mode fs.FileMode) error {
	dst := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := os.Remove(dst); err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := os.WriteFile(dst, data, mode); err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}
