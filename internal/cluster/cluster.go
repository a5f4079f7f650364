// Package cluster defines what a provider creates: a Kubernetes cluster of
// real nodes, reachable through a kubeconfig, whose nodes can run commands.
// Providers: kind (nodes are containers of the host's arch), qemu (arm64 VMs).
package cluster

import (
	"context"
	"fmt"
	"io"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Label marks every Docker object cnimatrix creates, so leftovers can be found.
const Label = "io.cnimatrix.run"

// OwnerAnnotation names the run that made an object in a cluster
// cnimatrix did not create (the checks' namespace there): gc leaves those
// of live runs alone.
const OwnerAnnotation = "io.cnimatrix.run/owner"

// NamePrefix starts the name of every cluster cnimatrix creates.
const NamePrefix = "cnimatrix-"

// Role of a node.
type Role string

const (
	ControlPlane Role = "control-plane"
	Worker       Role = "worker"
)

// NodeSpec asks for one node.
type NodeSpec struct {
	Role Role
	Arch string // "amd64" | "arm64"
}

// Mirror is a registry that nodes use in place of upstream registries.
type Mirror struct {
	// Endpoint is the mirror's base URL as seen from the nodes, e.g. http://172.18.0.1:41234.
	Endpoint string
	// Upstreams are the registry hosts it stands in for (docker.io, quay.io, registry.k8s.io).
	// Images of upstream U are served under the path prefix U/ (e.g. /v2/docker.io/calico/node).
	Upstreams []string
}

// Spec is what to create.
type Spec struct {
	Name              string // must start with NamePrefix
	KubernetesVersion string // e.g. v1.37.2
	Nodes             []NodeSpec
	NodeImage         string // provider-specific node image reference (kind: a docker image)
	PodSubnet         string // e.g. 10.244.0.0/16
	ServiceSubnet     string // e.g. 10.96.0.0/16
	Network           string // docker network the nodes join
	Mirror            *Mirror
	// WorkDir holds files the provider writes for this cluster (kubeconfig, registry config).
	WorkDir string
	// Preload are images (by reference) the provider may put on nodes
	// ahead of time where pulling is slow (QEMU VMs); others may ignore it.
	// Only the harness's own images belong here, never images under test.
	Preload map[string]v1.ImageIndex
	// OnBoot, when set, is called by providers whose nodes run commands
	// long before the cluster is ready (QEMU VMs: up and calibrated while
	// the control plane is still being made), once per such node, so the
	// caller can do node-local work in that wait. It must return at once.
	OnBoot func(Node)
}

// Node is one machine of a created cluster.
type Node struct {
	Name       string // Kubernetes node name
	Role       Role
	Arch       string
	InternalIP string
	Exec       Execer
	// Agent is host:port of the harness's own agent on the node (a QEMU
	// VM's cnimatrix-agent, which runs commands as root), "" when the node
	// has none. Pods on the node can reach it; the checks prove they cannot
	// use it (NodeAgentSealed).
	Agent string
}

// Execer runs a command on a node.
type Execer interface {
	// Run runs argv on the node; stdout and stderr may be nil.
	Run(ctx context.Context, stdout, stderr io.Writer, argv ...string) error
}

// Cluster is a created cluster.
type Cluster struct {
	Name       string
	Provider   string
	Kubeconfig []byte // for the host (API server reachable from here)
	Nodes      []Node
	// Emulated is set when some nodes run under CPU emulation (QEMU TCG);
	// Slowdown is then their measured CPU slowdown against the host.
	Emulated bool
	Slowdown float64
	// Notes are facts the provider established, worth recording (e.g.
	// that an x86-64 binary does not run on an arm64 VM).
	Notes []string
	// Marks are provider milestones (VM started, agent answered, joined).
	Marks []Mark
	// Logs are files the provider keeps per node (e.g. a VM's serial
	// console), name -> path, for artifacts.
	Logs map[string]string
}

// Mark is a point in a node's bring-up.
type Mark struct {
	Node  string
	Event string
	At    time.Time
}

// RESTConfig returns a client config for the cluster.
func (c *Cluster) RESTConfig() (*rest.Config, error) {
	cfg, err := clientcmd.RESTConfigFromKubeConfig(c.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig of %s: %w", c.Name, err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	return cfg, nil
}

// Provider creates and deletes clusters.
type Provider interface {
	// Name is the provider's name as scenarios spell it ("kind", "qemu").
	Name() string
	// Create creates the cluster and returns when its API server answers.
	// On error, whatever was created is deleted before returning.
	Create(ctx context.Context, spec Spec) (*Cluster, error)
	// Delete deletes the cluster and everything the provider created for it.
	// Deleting a cluster that does not exist is not an error.
	Delete(ctx context.Context, name string) error
	// List returns the names of clusters of this provider that cnimatrix created.
	List(ctx context.Context) ([]string, error)
	// Layout is the nodes this provider makes for a cell of arch with
	// count nodes, control plane first: what a mixed cluster is (an amd64
	// control plane beside arm64 VM workers) is the provider's to say.
	Layout(arch string, count int) []NodeSpec
	// NodeKind says what a node of the layout is ("kind node", "QEMU VM").
	NodeKind(n NodeSpec) string
}

// NodePreparer is a provider whose nodes boot from something built per
// Kubernetes version and image set (QEMU: the node disk, with the images
// preloaded). The engine's images step calls it, so a cold build is counted
// there and not as cluster time; Create finds it built.
type NodePreparer interface {
	// PrepareNodes builds (or finds cached) what spec's nodes boot from and
	// says what it is.
	PrepareNodes(ctx context.Context, spec Spec) (detail string, err error)
}

// UniformLayout is a layout of count nodes of one arch, control plane
// first.
func UniformLayout(arch string, count int) []NodeSpec {
	out := []NodeSpec{{Role: ControlPlane, Arch: arch}}
	for i := 1; i < count; i++ {
		out = append(out, NodeSpec{Role: Worker, Arch: arch})
	}
	return out
}
