package kind

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strings"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
)

// networkInfo is the part of `docker network inspect` that cnimatrix reads.
type networkInfo struct {
	Name   string `json:"Name"`
	ID     string `json:"Id"`
	Driver string `json:"Driver"`
	IPAM   struct {
		Config []struct {
			Subnet  string `json:"Subnet"`
			Gateway string `json:"Gateway"`
		} `json:"Config"`
	} `json:"IPAM"`
	Options    map[string]string `json:"Options"`
	Labels     map[string]string `json:"Labels"`
	Containers map[string]struct {
		Name        string `json:"Name"`
		IPv4Address string `json:"IPv4Address"`
	} `json:"Containers"`
}

// gateway returns the network's IPv4 gateway: the host's address on the
// bridge, which node containers reach and services on the host can bind.
func (n *networkInfo) gateway() (string, error) {
	for _, c := range n.IPAM.Config {
		if ip := net.ParseIP(c.Gateway); ip != nil && ip.To4() != nil {
			return ip.String(), nil
		}
	}
	return "", fmt.Errorf("docker network %s has no IPv4 gateway", n.Name)
}

// bridge returns the Linux bridge device of the network: docker names it
// br-<first 12 hex digits of the network id> unless an option names it.
func (n *networkInfo) bridge() string {
	if b := n.Options["com.docker.network.bridge.name"]; b != "" {
		return b
	}
	if len(n.ID) >= 12 {
		return "br-" + n.ID[:12]
	}
	return ""
}

// inspectNetwork returns nil, nil when the network does not exist.
func inspectNetwork(ctx context.Context, name string) (*networkInfo, error) {
	out, err := docker(ctx, "network", "inspect", name)
	if err != nil {
		if isNoSuchObject(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("inspect docker network %s: %w", name, err)
	}
	var infos []networkInfo
	if err := json.Unmarshal(out, &infos); err != nil {
		return nil, fmt.Errorf("decode docker network %s: %w", name, err)
	}
	// inspect matches ids and id prefixes too; only an exact name counts.
	for i := range infos {
		if infos[i].Name == name {
			return &infos[i], nil
		}
	}
	return nil, nil
}

// EnsureNetwork creates the bridge network name (labelled as cnimatrix's)
// when it does not exist, and returns its IPv4 gateway and Linux bridge.
// Nodes of a cluster whose Spec.Network is name join it.
func EnsureNetwork(ctx context.Context, name string) (gatewayIP, bridge string, err error) {
	if name == "" {
		return "", "", fmt.Errorf("ensure docker network: empty name")
	}
	n, err := inspectNetwork(ctx, name)
	if err != nil {
		return "", "", err
	}
	if n == nil {
		_, cerr := docker(ctx, "network", "create", "--driver", "bridge", "--label", cluster.Label+"=true", name)
		// Another run may have created it meanwhile; inspecting tells.
		if n, err = inspectNetwork(ctx, name); err != nil {
			return "", "", err
		}
		if n == nil {
			if cerr == nil {
				cerr = fmt.Errorf("created but not found")
			}
			return "", "", fmt.Errorf("create docker network %s: %w", name, cerr)
		}
	}
	if n.Driver != "bridge" {
		return "", "", fmt.Errorf("docker network %s has driver %q; kind nodes need a bridge network", name, n.Driver)
	}
	gw, err := n.gateway()
	if err != nil {
		return "", "", err
	}
	return gw, n.bridge(), nil
}

// DeleteNetwork removes a network created by EnsureNetwork. It refuses to
// remove a network that still has containers (another cluster, or a
// registry, may be using it) or that cnimatrix did not create. A missing
// network is not an error.
func DeleteNetwork(ctx context.Context, name string) error {
	n, err := inspectNetwork(ctx, name)
	if err != nil || n == nil {
		return err
	}
	if _, ok := n.Labels[cluster.Label]; !ok {
		return fmt.Errorf("delete docker network %s: not created by cnimatrix (no %s label)", name, cluster.Label)
	}
	if len(n.Containers) > 0 {
		var names []string
		for _, c := range n.Containers {
			names = append(names, c.Name)
		}
		sort.Strings(names)
		return fmt.Errorf("delete docker network %s: still has containers: %s", name, strings.Join(names, ", "))
	}
	if _, err := docker(ctx, "network", "rm", name); err != nil && !isNoSuchObject(err) {
		return fmt.Errorf("delete docker network %s: %w", name, err)
	}
	return nil
}

// Network describes a Docker bridge network for peers that are not
// containers (QEMU VMs on a tap device enslaved to its bridge).
type Network struct {
	Name    string
	Subnet  string // IPv4 CIDR, e.g. 172.18.0.0/16
	Gateway string
	Bridge  string   // Linux bridge device
	Used    []string // IPv4 addresses Docker has given to containers
}

// InspectNetwork describes network name.
func InspectNetwork(ctx context.Context, name string) (*Network, error) {
	n, err := inspectNetwork(ctx, name)
	if err != nil {
		return nil, err
	}
	if n == nil {
		return nil, fmt.Errorf("docker network %s does not exist", name)
	}
	out := &Network{Name: name, Bridge: n.bridge()}
	if out.Gateway, err = n.gateway(); err != nil {
		return nil, err
	}
	for _, c := range n.IPAM.Config {
		if _, ipn, err := net.ParseCIDR(c.Subnet); err == nil && ipn.IP.To4() != nil {
			out.Subnet = ipn.String()
			break
		}
	}
	if out.Subnet == "" {
		return nil, fmt.Errorf("docker network %s has no IPv4 subnet", name)
	}
	for _, c := range n.Containers {
		if ip, _, err := net.ParseCIDR(c.IPv4Address); err == nil {
			out.Used = append(out.Used, ip.String())
		}
	}
	return out, nil
}
