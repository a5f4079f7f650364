package qemu

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
)

// NodeConfig is what distinguishes one VM from another booted from the same
// disk. The disk's cnimatrix-node unit applies it on every boot and
// cnimatrix-join runs JoinCommand once.
type NodeConfig struct {
	// Hostname is the node name (lower-case RFC 1123).
	Hostname string
	// Address is the VM's IPv4 or IPv6 address with prefix on eth0,
	// e.g. 172.18.0.50/16. Empty leaves eth0 unconfigured.
	Address string
	// Gateway is the default route; it is also the DNS server when DNS is
	// empty.
	Gateway string
	// DNS servers for /etc/resolv.conf.
	DNS []string
	// Hosts are extra /etc/hosts entries, name -> address (e.g. the kind
	// control plane's name, which kubeadm's cluster-info names).
	Hosts map[string]string
	// JoinCommand is a shell command run once, e.g. the output of
	// `kubeadm token create --print-join-command`, plus any flags.
	JoinCommand string
	// Agent enables cnimatrix-agent in the VM. Its token is not here: the
	// kernel command line is world-readable in the guest (/proc/cmdline,
	// from any pod) and printed on the serial console, so it travels as a
	// fw_cfg file (VMOptions.AgentToken) that only root outside a container
	// can read.
	Agent bool
	// SelfTest makes the disk print `uname -m` and the result of running
	// an amd64 binary on the console (lines starting "cnimatrix-selftest:").
	SelfTest bool
}

var hostnameRe = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// maxCmdline is arm64's COMMAND_LINE_SIZE less room for the fixed arguments.
const maxCmdline = 2048 - 256

// KernelArgs turns c into kernel command-line arguments. Free-form values
// (hosts entries, the join command) are base64-encoded, since the kernel
// splits its command line at spaces.
func (c NodeConfig) KernelArgs() ([]string, error) {
	var args []string
	if c.Hostname != "" {
		if len(c.Hostname) > 63 || !hostnameRe.MatchString(c.Hostname) {
			return nil, fmt.Errorf("node config: bad hostname %q", c.Hostname)
		}
		args = append(args, "cnimatrix.hostname="+c.Hostname)
	}
	if c.Address != "" {
		if _, err := netip.ParsePrefix(c.Address); err != nil {
			return nil, fmt.Errorf("node config: address %q: %w", c.Address, err)
		}
		args = append(args, "cnimatrix.ip="+c.Address)
	}
	if c.Gateway != "" {
		if _, err := netip.ParseAddr(c.Gateway); err != nil {
			return nil, fmt.Errorf("node config: gateway %q: %w", c.Gateway, err)
		}
		args = append(args, "cnimatrix.gw="+c.Gateway)
	}
	if len(c.DNS) > 0 {
		for _, d := range c.DNS {
			if _, err := netip.ParseAddr(d); err != nil {
				return nil, fmt.Errorf("node config: DNS server %q: %w", d, err)
			}
		}
		args = append(args, "cnimatrix.dns="+strings.Join(c.DNS, ","))
	}
	if len(c.Hosts) > 0 {
		names := make([]string, 0, len(c.Hosts))
		for n := range c.Hosts {
			names = append(names, n)
		}
		slices.Sort(names)
		var b strings.Builder
		for _, n := range names {
			if !hostnameRe.MatchString(n) {
				return nil, fmt.Errorf("node config: bad hosts name %q", n)
			}
			a, err := netip.ParseAddr(c.Hosts[n])
			if err != nil {
				return nil, fmt.Errorf("node config: hosts entry %s: %w", n, err)
			}
			fmt.Fprintf(&b, "%s %s\n", a, n)
		}
		args = append(args, "cnimatrix.hosts="+base64.StdEncoding.EncodeToString([]byte(b.String())))
	}
	if c.JoinCommand != "" {
		args = append(args, "cnimatrix.join="+base64.StdEncoding.EncodeToString([]byte(c.JoinCommand)))
	}
	if c.Agent {
		args = append(args, "cnimatrix.agent=1")
	}
	if c.SelfTest {
		args = append(args, "cnimatrix.selftest=1")
	}
	if n := len(strings.Join(args, " ")); n > maxCmdline {
		return nil, fmt.Errorf("node config: %d bytes of kernel arguments, at most %d fit", n, maxCmdline)
	}
	return args, nil
}
