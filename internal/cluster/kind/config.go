package kind

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
	"github.com/cnimatrix/cnimatrix/internal/images"
)

// HostFacts are the properties of the Docker host that change what a node
// needs in its configuration. They are detected once per Create and passed
// explicitly so that config generation is a pure function (and testable).
type HostFacts struct {
	// CgroupV1 is true when the host has no unified cgroup2 hierarchy at
	// /sys/fs/cgroup. Kubernetes >= 1.35 kubelets refuse to start there unless
	// failCgroupV1 is false.
	CgroupV1 bool
	// NoSysResource is true when CAP_SYS_RESOURCE is missing from the
	// capability bounding set. The kubelet then cannot give pods the
	// oom_score_adj it wants (-997/-998 need that capability), and runc fails
	// with "can't get final child's PID from pipe"; containerd's
	// restrict_oom_score_adj clamps the value instead.
	NoSysResource bool
}

// capSysResource is the bit of CAP_SYS_RESOURCE in a capability mask.
const capSysResource = 24

// DetectHostFacts reads the facts from this host's /sys and /proc. The Docker
// engine is local (kind drives the local docker CLI), so this host's facts
// are the nodes' facts.
func DetectHostFacts() (HostFacts, error) {
	var f HostFacts
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
		if !os.IsNotExist(err) {
			return f, fmt.Errorf("detect cgroup version: %w", err)
		}
		f.CgroupV1 = true
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return f, fmt.Errorf("read capability bounding set: %w", err)
	}
	bnd, err := capBnd(string(status))
	if err != nil {
		return f, err
	}
	f.NoSysResource = bnd&(1<<capSysResource) == 0
	return f, nil
}

// capBnd extracts the CapBnd mask from the text of /proc/<pid>/status.
func capBnd(status string) (uint64, error) {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return 0, fmt.Errorf("parse CapBnd %q: %w", strings.TrimSpace(v), err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("no CapBnd line in /proc/self/status")
}

// kubeletCgroupV1Patch lets a 1.35+ kubelet run on a cgroup v1 host. kind
// merges a patch into every document of its kubeadm config whose kind (and
// apiVersion, when given) match, so this lands in the cluster-wide
// KubeletConfiguration that kubeadm init uploads and kubeadm join downloads.
const kubeletCgroupV1Patch = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
`

// restrictOOMPatches set restrict_oom_score_adj in the node's containerd
// config. The key lives in a different plugin section per config version;
// kind applies only the patch whose "version" equals the node config's, so
// one is given per version: 3 for cnimatrix's node images, 2 for upstream
// kind images, 4 for images written for containerd 2.4's newest format.
var restrictOOMPatches = []string{
	`version = 3
[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
`,
	`version = 4
[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
`,
	`version = 2
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
`,
}

// registryCertsPath is where the nodes' containerd looks for hosts.toml
// files (config_path of the CRI registry config in the node image).
const registryCertsPath = "/etc/containerd/certs.d"

// registryConfigPathPatches make containerd read its registry hosts from
// registryCertsPath on a node image not built here (kind's published
// kindest/node): ours says so in its own config. One per config version,
// as for restrictOOMPatches.
var registryConfigPathPatches = []string{
	`version = 2
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "` + registryCertsPath + `"
`,
	`version = 3
[plugins."io.containerd.cri.v1.images".registry]
  config_path = "` + registryCertsPath + `"
`,
	`version = 4
[plugins."io.containerd.cri.v1.images".registry]
  config_path = "` + registryCertsPath + `"
`,
}

// buildConfig turns a cluster spec into kind's v1alpha4 configuration.
// certsDir, when not empty, is a host directory of containerd hosts.toml
// files mounted read-only into every node at registryCertsPath.
func buildConfig(spec cluster.Spec, facts HostFacts, certsDir string) (*v1alpha4.Cluster, error) {
	if err := validateSpec(spec); err != nil {
		return nil, err
	}
	cfg := &v1alpha4.Cluster{
		TypeMeta: v1alpha4.TypeMeta{Kind: "Cluster", APIVersion: "kind.x-k8s.io/v1alpha4"},
		Name:     spec.Name,
		Networking: v1alpha4.Networking{
			IPFamily:          v1alpha4.IPv4Family,
			PodSubnet:         spec.PodSubnet,
			ServiceSubnet:     spec.ServiceSubnet,
			DisableDefaultCNI: true,
			KubeProxyMode:     v1alpha4.IPTablesProxyMode,
		},
	}
	var mounts []v1alpha4.Mount
	if certsDir != "" {
		abs, err := filepath.Abs(certsDir)
		if err != nil {
			return nil, fmt.Errorf("registry config dir %s: %w", certsDir, err)
		}
		mounts = append(mounts, v1alpha4.Mount{HostPath: abs, ContainerPath: registryCertsPath, Readonly: true})
	}
	for _, n := range spec.Nodes {
		role := v1alpha4.WorkerRole
		if n.Role == cluster.ControlPlane {
			role = v1alpha4.ControlPlaneRole
		}
		cfg.Nodes = append(cfg.Nodes, v1alpha4.Node{
			Role:        role,
			Image:       spec.NodeImage,
			ExtraMounts: append([]v1alpha4.Mount(nil), mounts...),
		})
	}
	if facts.CgroupV1 {
		cfg.KubeadmConfigPatches = append(cfg.KubeadmConfigPatches, kubeletCgroupV1Patch)
	}
	if facts.NoSysResource {
		cfg.ContainerdConfigPatches = append(cfg.ContainerdConfigPatches, restrictOOMPatches...)
	}
	if certsDir != "" && !strings.HasPrefix(spec.NodeImage, images.NodeImageRepo+":") {
		cfg.ContainerdConfigPatches = append(cfg.ContainerdConfigPatches, registryConfigPathPatches...)
	}
	return cfg, nil
}

// validateSpec rejects what this provider cannot build offline, with the
// reason, before any container exists.
func validateSpec(spec cluster.Spec) error {
	if !strings.HasPrefix(spec.Name, cluster.NamePrefix) {
		return fmt.Errorf("cluster name %q must start with %q", spec.Name, cluster.NamePrefix)
	}
	if spec.NodeImage == "" {
		return fmt.Errorf("cluster %s: no node image", spec.Name)
	}
	if len(spec.Nodes) == 0 {
		return fmt.Errorf("cluster %s: no nodes", spec.Name)
	}
	cps := 0
	for i, n := range spec.Nodes {
		switch n.Role {
		case cluster.ControlPlane:
			cps++
		case cluster.Worker:
		default:
			return fmt.Errorf("cluster %s: node %d: unknown role %q", spec.Name, i, n.Role)
		}
		if n.Arch != "" && n.Arch != runtime.GOARCH {
			return fmt.Errorf("cluster %s: node %d: kind nodes are containers of the host's arch (%s), not %s; use the qemu provider",
				spec.Name, i, runtime.GOARCH, n.Arch)
		}
	}
	if cps != 1 {
		// kind fronts several control planes with an haproxy image
		// (kindest/haproxy) that cannot be pulled offline.
		return fmt.Errorf("cluster %s: the kind provider needs exactly one control-plane node, got %d", spec.Name, cps)
	}
	return nil
}

// writeMirrorHosts writes the nodes' registry configuration for mirror into
// dir. The nodes reach the mirror over plain HTTP; images.WriteContainerdHosts
// takes its host:port.
func writeMirrorHosts(dir string, m *cluster.Mirror) error {
	hostPort, ok := strings.CutPrefix(strings.TrimRight(m.Endpoint, "/"), "http://")
	if !ok || hostPort == "" || strings.Contains(hostPort, "/") {
		return fmt.Errorf("mirror endpoint %q: want http://host:port", m.Endpoint)
	}
	return images.WriteContainerdHosts(dir, hostPort, m.Upstreams)
}
