// Package kernelfacts reads, on each node of a cluster, what its kernel
// offers a CNI: the tunnel link types (ipip, vxlan, wireguard), the iptables
// backend, the kernel release, machine and page size. Calico's encapsulation
// choice is only as good as the kernel under it, and a missing ipip module
// otherwise shows up minutes later as calico-node never becoming ready.
//
// A feature's verdict comes from trying it: creating (and deleting) a link of
// that type on the node. Module files and sysfs are read too, as evidence and
// as a fallback when the node cannot create links (no ip binary, no
// CAP_NET_ADMIN), because on a node without /lib/modules (kind on a kernel
// whose modules are not on disk) they cannot tell loadable from absent.
package kernelfacts

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
)

// Module states, from the most to the least certain that the feature works.
const (
	ModuleLoaded   = "loaded"   // /sys/module/<m>/initstate exists
	ModuleBuiltin  = "builtin"  // in the kernel image
	ModuleLoadable = "loadable" // a .ko for the running kernel exists
	ModuleAbsent   = "absent"   // the node's module index does not list it
	ModuleUnknown  = "unknown"  // nothing to go by (no /lib/modules, no config)
)

// Feature is one kernel capability as seen on a node.
type Feature struct {
	Name string // ipip, vxlan, wireguard
	// Available is the verdict: a link of this type could be created, or,
	// when that could not be tried, the module is loaded, built in or loadable.
	Available bool
	// Definitive is set when the verdict comes from creating a link: the
	// kernel itself answered. Otherwise it is read from module files.
	Definitive bool
	Module     string   // one of the Module* states
	Evidence   []string // what was read, e.g. "ip link add type ipip: Error: Unknown device type."
}

// Facts is what one node's kernel offers.
type Facts struct {
	Node            string
	Release         string // uname -r
	Machine         string // uname -m
	PageSize        int    // bytes; 0 when unknown
	IPIP, VXLAN     Feature
	WireGuard       Feature
	IPTablesBackend string // "nf_tables", "legacy", or "" when iptables is missing
	IPTablesVersion string // the first line of iptables -V
	Took            time.Duration
}

// String is one line for logs and evidence.
func (f Facts) String() string {
	b := f.IPTablesBackend
	if b == "" {
		b = "none"
	}
	return fmt.Sprintf("node %s (%s): ipip %s, vxlan %s, wireguard %s, iptables %s, page size %d",
		f.Node, f.kernel(), f.IPIP.verdict(), f.VXLAN.verdict(), f.WireGuard.verdict(), b, f.PageSize)
}

func (f Facts) kernel() string {
	return strings.TrimSpace(f.Release + " " + f.Machine)
}

func (ft Feature) verdict() string {
	s := "no"
	if ft.Available {
		s = "yes"
	}
	how := "module " + ft.Module
	if ft.Definitive {
		how = "link test, module " + ft.Module
	}
	return s + " (" + how + ")"
}

// Test link names: fixed, so that a probe cut short is cleaned up by the
// next one (each deletes them before it starts), and at most 15 bytes
// (IFNAMSIZ).
const (
	linkIPIP      = "cmxipiptest"
	linkVXLAN     = "cmxvxlantest"
	linkWireGuard = "cmxwgtest"
)

// cleanupScript deletes the test links; it is also run on its own after a
// probe that failed or was cut short.
const cleanupScript = `for l in ` + linkIPIP + ` ` + linkVXLAN + ` ` + linkWireGuard + `; do ip link del "$l" 2>/dev/null; done; true`

// probeScript prints key=value lines. It is one script rather than one exec
// per fact because an exec on a QEMU VM node costs a round trip through its
// agent. Links are created down and never brought up, so the vxlan one binds
// no UDP port. Loading ipip as a side effect makes the kernel add its
// fallback device tunl0 to every network namespace; that is what Calico's
// own startup does too, and it cannot be undone without unloading the module.
const probeScript = `
cleanup() { ` + cleanupScript + `; }
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
cleanup
oneline() { tr '\n' ' ' | sed 's/ *$//'; }
rel=$(uname -r)
echo "release=$rel"
echo "machine=$(uname -m)"
echo "pagesize=$(getconf PAGESIZE 2>/dev/null)"
if [ -r /proc/config.gz ]; then cfg="gzip -dc /proc/config.gz"
elif [ -r "/boot/config-$rel" ]; then cfg="cat /boot/config-$rel"
else cfg=""; fi
mod() {
	m=$1; opt=$2
	if [ -e "/sys/module/$m/initstate" ]; then echo "$m.sys=loaded"
	elif [ -d "/sys/module/$m" ]; then echo "$m.sys=builtin"
	else echo "$m.sys=absent"; fi
	d="/lib/modules/$rel"
	if [ ! -e "$d/modules.dep" ]; then echo "$m.modules=nodir"
	elif grep -qE "(^|/)$m\.ko" "$d/modules.builtin" 2>/dev/null; then echo "$m.modules=builtin"
	elif grep -qE "(^|/)$m\.ko(\.[a-z]+)?:" "$d/modules.dep"; then echo "$m.modules=loadable"
	else echo "$m.modules=absent"; fi
	if command -v modprobe >/dev/null 2>&1; then
		out=$(modprobe -n -v "$m" 2>&1); rc=$?
		echo "$m.modprobe=$rc $(printf '%s' "$out" | oneline)"
	fi
	if [ -n "$cfg" ]; then
		echo "$m.config=$($cfg 2>/dev/null | grep -E "^(# )?CONFIG_$opt[= ]" | oneline)"
	fi
}
link() {
	m=$1; name=$2; shift 2
	out=$(ip link add "$name" "$@" 2>&1); rc=$?
	ip link del "$name" 2>/dev/null
	echo "$m.link=$rc $(printf '%s' "$out" | oneline)"
}
mod ipip NET_IPIP
mod vxlan VXLAN
mod wireguard WIREGUARD
if command -v ip >/dev/null 2>&1; then
	link ipip ` + linkIPIP + ` type ipip
	link vxlan ` + linkVXLAN + ` type vxlan id 42 dstport 4789 dev lo
	link wireguard ` + linkWireGuard + ` type wireguard
fi
if command -v iptables >/dev/null 2>&1; then
	echo "iptables=$(iptables -V 2>&1 | head -n1)"
fi
`

// DefaultTimeout bounds one node's probe when the caller's context has no
// earlier deadline; generous for an emulated node answering through an agent.
const DefaultTimeout = 2 * time.Minute

// cleanupTimeout bounds the cleanup after a failed probe, which runs on a
// context of its own because the probe's may be what ended.
const cleanupTimeout = 20 * time.Second

// Probe reads node's kernel facts. The test links are deleted by the script
// itself and, when the probe fails, once more from here.
func Probe(ctx context.Context, node cluster.Node) (Facts, error) {
	if node.Exec == nil {
		return Facts{Node: node.Name}, fmt.Errorf("kernel facts of node %s: the provider gave no way to run commands on it", node.Name)
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	t0 := time.Now()
	var stdout, stderr bytes.Buffer
	err := node.Exec.Run(ctx, &stdout, &stderr, "sh", "-c", probeScript)
	took := time.Since(t0)
	if err != nil {
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer ccancel()
		if cerr := node.Exec.Run(cctx, nil, nil, "sh", "-c", cleanupScript); cerr != nil {
			err = errors.Join(err, fmt.Errorf("clean up test links: %w", cerr))
		}
		msg := strings.TrimSpace(stderr.String())
		if msg != "" {
			return Facts{Node: node.Name, Took: took}, fmt.Errorf("kernel facts of node %s: %w: %s", node.Name, err, msg)
		}
		return Facts{Node: node.Name, Took: took}, fmt.Errorf("kernel facts of node %s: %w", node.Name, err)
	}
	f, err := parse(node.Name, stdout.String())
	f.Took = took
	if err != nil {
		return f, fmt.Errorf("kernel facts of node %s: %w", node.Name, err)
	}
	return f, nil
}

// ProbeAll probes every node at once and returns their facts in the order
// given. Nodes that could not be probed are left out and named in the error.
func ProbeAll(ctx context.Context, nodes []cluster.Node) ([]Facts, error) {
	type res struct {
		f   Facts
		err error
	}
	out := make([]res, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			f, err := Probe(ctx, n)
			out[i] = res{f, err}
		})
	}
	wg.Wait()
	var facts []Facts
	var errs []error
	for _, r := range out {
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		facts = append(facts, r.f)
	}
	return facts, errors.Join(errs...)
}

// parse reads probeScript's output.
func parse(node, out string) (Facts, error) {
	kv := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok {
			kv[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	f := Facts{Node: node, Release: kv["release"], Machine: kv["machine"]}
	if f.Release == "" {
		return f, fmt.Errorf("probe printed no kernel release (output: %q)", clip(out))
	}
	f.PageSize, _ = strconv.Atoi(kv["pagesize"])
	f.IPIP = feature("ipip", "type ipip", kv)
	f.VXLAN = feature("vxlan", "type vxlan", kv)
	f.WireGuard = feature("wireguard", "type wireguard", kv)
	if v, ok := kv["iptables"]; ok {
		f.IPTablesVersion = v
		f.IPTablesBackend = iptablesBackend(v)
	}
	return f, nil
}

// iptablesBackend reads `iptables -V`. iptables before 1.8 had only the
// legacy backend and did not say so.
func iptablesBackend(v string) string {
	switch {
	case strings.Contains(v, "(nf_tables)"):
		return "nf_tables"
	case strings.Contains(v, "(legacy)"), strings.HasPrefix(v, "iptables v1.4"), strings.HasPrefix(v, "iptables v1.6"):
		return "legacy"
	case v == "":
		return ""
	}
	return "unknown"
}

func feature(name, linkType string, kv map[string]string) Feature {
	ft := Feature{Name: name, Module: ModuleUnknown}
	sys := kv[name+".sys"]
	modules := kv[name+".modules"]
	cfg := kv[name+".config"]
	switch {
	case sys == ModuleLoaded, sys == ModuleBuiltin:
		ft.Module = sys
	case modules == ModuleBuiltin, modules == ModuleLoadable, modules == ModuleAbsent:
		ft.Module = modules
	case strings.HasSuffix(cfg, "=y"):
		ft.Module = ModuleBuiltin
	case strings.HasSuffix(cfg, "is not set"):
		ft.Module = ModuleAbsent
	}
	// A module built as =m whose file is not on the node cannot be loaded
	// there: the config alone says "loadable" only where /lib/modules is.
	ft.Evidence = append(ft.Evidence, "/sys/module/"+name+": "+orNone(sys))
	switch modules {
	case "nodir":
		ft.Evidence = append(ft.Evidence, "no modules.dep for the running kernel")
	case "":
	default:
		ft.Evidence = append(ft.Evidence, "modules.dep/builtin: "+modules)
	}
	if v, ok := kv[name+".modprobe"]; ok {
		ft.Evidence = append(ft.Evidence, "modprobe -n -v: "+exitAndText(v))
	}
	if cfg != "" {
		ft.Evidence = append(ft.Evidence, "kernel config: "+cfg)
	}
	link, tried := kv[name+".link"]
	if tried {
		rcs, msg, _ := strings.Cut(link, " ")
		rc, err := strconv.Atoi(rcs)
		switch {
		case err != nil:
			ft.Evidence = append(ft.Evidence, "ip link add "+linkType+": unreadable result "+strconv.Quote(link))
		case rc == 0:
			ft.Available, ft.Definitive = true, true
			ft.Evidence = append(ft.Evidence, "ip link add "+linkType+": ok (deleted)")
		default:
			ft.Evidence = append(ft.Evidence, "ip link add "+linkType+": "+orNone(msg))
			// Only the kernel's "no such link type" is a verdict on the
			// kernel; permission or naming errors say nothing about it.
			if strings.Contains(msg, "Unknown device type") || strings.Contains(msg, "not supported") {
				ft.Definitive = true
			}
		}
	}
	if !ft.Definitive {
		ft.Available = ft.Module == ModuleLoaded || ft.Module == ModuleBuiltin || ft.Module == ModuleLoadable
	}
	return ft
}

func exitAndText(v string) string {
	rc, msg, _ := strings.Cut(v, " ")
	if rc == "0" {
		return orNone(msg)
	}
	return "exit " + rc + ": " + orNone(msg)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func clip(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// Encapsulations Calico's IPPool and Installation resources accept.
const (
	EncapIPIP             = "IPIP"
	EncapIPIPCrossSubnet  = "IPIPCrossSubnet"
	EncapVXLAN            = "VXLAN"
	EncapVXLANCrossSubnet = "VXLANCrossSubnet"
	EncapNone             = "None"
)

// Encapsulations lists them, in the order alternatives are suggested.
var Encapsulations = []string{EncapVXLAN, EncapVXLANCrossSubnet, EncapIPIP, EncapIPIPCrossSubnet, EncapNone}

// Needs is the kernel features an encapsulation needs on every node.
func Needs(encapsulation string) ([]string, error) {
	switch encapsulation {
	case EncapIPIP, EncapIPIPCrossSubnet:
		return []string{"ipip"}, nil
	case EncapVXLAN, EncapVXLANCrossSubnet:
		return []string{"vxlan"}, nil
	case EncapNone, "":
		// Plain routes (BGP): no tunnel, nothing beyond what any node has.
		return nil, nil
	}
	return nil, fmt.Errorf("unknown encapsulation %q (known: %s)", encapsulation, strings.Join(Encapsulations, ", "))
}

// MissingError says that a node's kernel lacks a feature an encapsulation
// needs. Its text starts with "kernel-feature:", the root cause the matrix
// reports.
type MissingError struct {
	Node, Kernel  string
	Feature       string
	Encapsulation string
	Evidence      []string
	// Alternatives are encapsulations every probed node's kernel supports.
	Alternatives []string
}

func (e *MissingError) Error() string {
	s := fmt.Sprintf("kernel-feature: node %s (%s) has no %s module: %s encapsulation cannot work", e.Node, e.Kernel, e.Feature, e.Encapsulation)
	if len(e.Alternatives) > 0 {
		s += "; use " + strings.Join(e.Alternatives, " or ")
	}
	if len(e.Evidence) > 0 {
		s += " [" + strings.Join(e.Evidence, "; ") + "]"
	}
	return s
}

// Require returns an error when some node's kernel cannot carry
// encapsulation: one *MissingError per node and missing feature, joined. A
// feature is missing when the link test said so, or, where it could not be
// tried, when the module index does not list it; "unknown" is not missing,
// since failing a cell on a guess would hide the real outcome.
func Require(facts []Facts, encapsulation string) error {
	needs, err := Needs(encapsulation)
	if err != nil {
		return err
	}
	var errs []error
	for _, f := range facts {
		for _, need := range needs {
			ft := f.feature(need)
			if !missing(ft) {
				continue
			}
			errs = append(errs, &MissingError{
				Node: f.Node, Kernel: f.kernel(), Feature: need, Encapsulation: encapsulation,
				Evidence: ft.Evidence, Alternatives: alternatives(facts, need),
			})
		}
	}
	return errors.Join(errs...)
}

func (f Facts) feature(name string) Feature {
	switch name {
	case "ipip":
		return f.IPIP
	case "vxlan":
		return f.VXLAN
	case "wireguard":
		return f.WireGuard
	}
	return Feature{Name: name, Module: ModuleUnknown}
}

func missing(ft Feature) bool {
	if ft.Definitive {
		return !ft.Available
	}
	return ft.Module == ModuleAbsent
}

// alternatives are the encapsulations (other than those needing the missing
// feature) every node supports; None always qualifies as far as the kernel
// goes, so it is offered last.
func alternatives(facts []Facts, lacking string) []string {
	var out []string
	seen := map[string]bool{}
	for _, enc := range Encapsulations {
		needs, _ := Needs(enc)
		if slices.Contains(needs, lacking) {
			continue
		}
		ok := true
		for _, f := range facts {
			for _, n := range needs {
				if missing(f.feature(n)) {
					ok = false
				}
			}
		}
		// VXLAN and VXLANCrossSubnet need the same: suggest the plain one.
		key := strings.TrimSuffix(enc, "CrossSubnet")
		if ok && !seen[key] {
			seen[key] = true
			out = append(out, enc)
		}
	}
	return out
}
