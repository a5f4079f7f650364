package checks

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/dynamic"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
)

// TunnelDevice checks, on every node, that the CNI's tunnel device exists,
// is up and is of the expected kind, with `ip -d link show` run on the node
// itself (not in a pod: the device lives in the node's network namespace).
// Calico's devices are tunl0 (IPIP) and vxlan.calico (VXLAN); Device checks
// any other, e.g. flannel's flannel.1.
type TunnelDevice struct {
	// Device is the device to look for; empty derives it from
	// Encapsulation, or, when that is empty too, from the IP pools.
	Device string
	// Kind is the link kind the device must be (ipip, vxlan); empty
	// derives it from the device's name where known.
	Kind          string
	Encapsulation string
	// Client overrides the dynamic client used to read IP pools (tests).
	Client dynamic.Interface
	// Wait bounds the wait for devices to appear (felix creates them
	// shortly after it starts); default: env.Timeout, at most a minute.
	Wait time.Duration
}

func (TunnelDevice) Name() string { return NameTunnelDevice }

// Calico's tunnel devices.
const (
	calicoIPIPDevice  = "tunl0"
	calicoVXLANDevice = "vxlan.calico"
)

// deviceKinds are the link kinds of the tunnel devices we know by name.
var deviceKinds = map[string]string{
	calicoIPIPDevice:  "ipip",
	calicoVXLANDevice: "vxlan",
	"flannel.1":       "vxlan",
}

func (c TunnelDevice) Run(ctx context.Context, env *Env) Result {
	env.init()
	wait := c.Wait
	if wait <= 0 {
		wait = min(env.Timeout, time.Minute)
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	devices, why, err := c.devices(ctx, env)
	if err != nil {
		return fail(nil, "%v", err)
	}
	if len(devices) == 0 {
		return skip(nil, "no tunnel device to check: %s", why)
	}
	if len(env.Nodes) == 0 {
		return fail(nil, "no nodes to run ip on (env.Nodes is empty)")
	}
	t0 := time.Now()
	type key struct{ node, dev string }
	last := map[key]Evidence{}
	var mu sync.Mutex
	polls := 0
	// Nodes are asked in parallel: each ask is an exec, slow on VM nodes.
	err = poll(ctx, func(ctx context.Context) (bool, error) {
		polls++
		var wg sync.WaitGroup
		for _, n := range env.Nodes {
			for _, dev := range devices {
				k := key{n.Name, dev}
				mu.Lock()
				done := last[k].OK
				mu.Unlock()
				if done {
					continue
				}
				wg.Go(func() {
					e := c.inspect(ctx, n, dev)
					e.Attempts = polls
					if e.OK {
						e.Latency = time.Since(t0)
					}
					mu.Lock()
					last[k] = e
					mu.Unlock()
				})
			}
		}
		wg.Wait()
		for _, e := range last {
			if !e.OK {
				return false, nil
			}
		}
		return len(last) == len(env.Nodes)*len(devices), nil
	})
	var ev []Evidence
	for _, n := range env.Nodes {
		for _, dev := range devices {
			e, ok := last[key{n.Name, dev}]
			if !ok {
				e = Evidence{Check: c.Name(), Source: "node " + n.Name, Target: dev, Detail: fmt.Sprintf("not asked before the wait ended: %v", err)}
			}
			ev = append(ev, e)
		}
	}
	r := summarize(ev)
	if !r.OK && why != "" {
		r.Err += " (expected because " + why + ")"
	}
	return r
}

// devices is what to look for and why.
func (c TunnelDevice) devices(ctx context.Context, env *Env) ([]string, string, error) {
	if c.Device != "" {
		return []string{c.Device}, "asked for " + c.Device, nil
	}
	if c.Encapsulation != "" {
		d, err := calicoDevices(c.Encapsulation)
		return d, "encapsulation " + c.Encapsulation, err
	}
	client := c.Client
	if client == nil {
		if env.Config == nil {
			return nil, "", fmt.Errorf("no device, encapsulation or rest.Config to read IP pools with")
		}
		dc, err := dynamic.NewForConfig(env.Config)
		if err != nil {
			return nil, "", fmt.Errorf("dynamic client: %w", err)
		}
		client = dc
	}
	pools, errs := listIPPools(ctx, client)
	if len(pools) == 0 {
		if len(errs) > 0 {
			return nil, "", fmt.Errorf("read IP pools to pick the tunnel device: %s", strings.Join(errs, "; "))
		}
		return nil, "no IP pools found", nil
	}
	var devs, reasons []string
	for _, p := range pools {
		if p.Disabled {
			continue
		}
		if p.IPIPMode != "Never" && !slices.Contains(devs, calicoIPIPDevice) {
			devs = append(devs, calicoIPIPDevice)
			reasons = append(reasons, fmt.Sprintf("ippool %s has ipipMode %s", p.Name, p.IPIPMode))
		}
		if p.VXLANMode != "Never" && !slices.Contains(devs, calicoVXLANDevice) {
			devs = append(devs, calicoVXLANDevice)
			reasons = append(reasons, fmt.Sprintf("ippool %s has vxlanMode %s", p.Name, p.VXLANMode))
		}
	}
	if len(devs) == 0 {
		return nil, "the enabled IP pools use no encapsulation", nil
	}
	return devs, strings.Join(reasons, ", "), nil
}

// calicoDevices is the device an encapsulation makes felix create; None
// makes none (routes only).
func calicoDevices(enc string) ([]string, error) {
	m, err := encapModes(enc)
	if err != nil {
		return nil, err
	}
	var out []string
	if m.ipip != "Never" {
		out = append(out, calicoIPIPDevice)
	}
	if m.vxlan != "Never" {
		out = append(out, calicoVXLANDevice)
	}
	return out, nil
}

// inspectTimeout bounds one `ip` run on a node.
const inspectTimeout = 30 * time.Second

// inspect runs `ip -d link show dev` on the node.
func (c TunnelDevice) inspect(ctx context.Context, n cluster.Node, dev string) Evidence {
	e := Evidence{Check: c.Name(), Source: "node " + n.Name, Target: dev}
	if n.Exec == nil {
		e.Detail = "the provider gave no way to run commands on this node"
		return e
	}
	ctx, cancel := context.WithTimeout(ctx, inspectTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := n.Exec.Run(ctx, &stdout, &stderr, "ip", "-d", "link", "show", "dev", dev)
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		e.Detail = "ip -d link show: " + excerpt(msg, 200)
		return e
	}
	kind := c.Kind
	if kind == "" {
		kind = deviceKinds[dev]
	}
	l := parseIPLink(stdout.String())
	e.Detail = l.String()
	var problems []string
	if l.name == "" {
		problems = append(problems, "unreadable ip output: "+excerpt(stdout.String(), 200))
	}
	if !slices.Contains(l.flags, "UP") {
		problems = append(problems, "not UP")
	}
	if kind != "" && l.kind != kind {
		problems = append(problems, fmt.Sprintf("kind %q, want %q", l.kind, kind))
	}
	if len(problems) > 0 {
		e.Detail += ": " + strings.Join(problems, ", ")
		return e
	}
	e.OK = true
	return e
}

// ipLink is what `ip -d link show` says of a device.
type ipLink struct {
	name    string
	flags   []string
	mtu     string
	state   string
	kind    string // ipip, vxlan, ... (the details line's first word)
	details string // that line, bounded
}

func (l ipLink) String() string {
	s := fmt.Sprintf("%s <%s> mtu %s state %s", l.name, strings.Join(l.flags, ","), orDash(l.mtu), orDash(l.state))
	if l.details != "" {
		s += ": " + l.details
	}
	return s
}

var ipLinkHeader = regexp.MustCompile(`^\d+:\s+([^:@\s]+)(?:@\S+)?:\s+<([^>]*)>(.*)$`)

// linkKinds are the first words of ip's details line that name a link
// kind, as opposed to the attributes ip prints on that line for every link.
var linkKinds = []string{"ipip", "vxlan", "wireguard", "gre", "sit", "ip6tnl", "geneve", "veth", "bridge", "dummy"}

func parseIPLink(out string) ipLink {
	var l ipLink
	for _, line := range strings.Split(out, "\n") {
		t := strings.TrimSpace(line)
		if m := ipLinkHeader.FindStringSubmatch(t); m != nil {
			l.name = m[1]
			if m[2] != "" {
				l.flags = strings.Split(m[2], ",")
			}
			f := strings.Fields(m[3])
			for i := 0; i+1 < len(f); i++ {
				switch f[i] {
				case "mtu":
					l.mtu = f[i+1]
				case "state":
					l.state = f[i+1]
				}
			}
			continue
		}
		w := strings.Fields(t)
		if l.kind == "" && len(w) > 0 && slices.Contains(linkKinds, w[0]) {
			l.kind = w[0]
			l.details = excerpt(trimIPDetails(t), 160)
		}
	}
	return l
}

// trimIPDetails cuts the generic tail (queue and offload sizes) ip appends
// to the kind's own attributes.
func trimIPDetails(s string) string {
	for _, stop := range []string{" addrgenmode ", " numtxqueues ", " gso_max_size "} {
		if i := strings.Index(s, stop); i >= 0 {
			s = s[:i]
		}
	}
	return s
}
