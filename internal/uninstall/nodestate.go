package uninstall

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
)

// NodeState is what a CNI can leave on a node, as read by snapshotScript:
// the entries of the directories CNIs write to, network links, routes,
// iptables chains and rules (per backend and table), nftables tables and
// ipsets. A reused node is clean when its state is its baseline's again.
type NodeState struct {
	Node   string
	Paths  []string
	Links  []string
	Routes []string
	// Chains are "<backend> <table> <chain>", Rules "<backend> <table> -A ...".
	Chains []string
	Rules  []string
	NFT    []string // "<family> <table>"
	IPSets []string
}

// cniDirs are where CNIs put configuration, binaries and state. Anything in
// them that was not there when the cluster was made belongs to a CNI.
var cniDirs = []string{"/etc/cni/net.d", "/opt/cni/bin", "/var/lib/cni", "/var/lib/calico", "/run/calico", "/run/flannel", "/var/log/calico"}

// iptablesBackends are read separately: a CNI's image may use a backend
// other than the node's (and kube-proxy's) own.
var iptablesBackends = []string{"iptables-legacy", "iptables-nft", "ip6tables-legacy", "ip6tables-nft"}

// snapshotScript prints one fact per line, prefixed by its kind. It reads
// only; every part is optional because nodes differ in what they have.
var snapshotScript = `
for d in ` + strings.Join(cniDirs, " ") + `; do
  [ -d "$d" ] && find "$d" -mindepth 1 -maxdepth 2 2>/dev/null | sed 's/^/path /'
done
ip -o link show | awk -F': ' '{sub(/@.*/, "", $2); print "link " $2}'
ip -4 route show table main | sed 's/ linkdown//; s/ *$//; s/^/route /'
for b in ` + strings.Join(iptablesBackends, " ") + `; do
  command -v $b-save >/dev/null 2>&1 || continue
  $b-save 2>/dev/null | awk -v b=$b '
    /^\*/ {t = substr($0, 2)}
    /^:/  {print "chain " b " " t " " substr($1, 2)}
    /^-A/ {print "rule " b " " t " " $0}'
done
if command -v nft >/dev/null 2>&1; then nft list tables 2>/dev/null | awk '$1 == "table" {print "nft " $2 " " $3}'; fi
if command -v ipset >/dev/null 2>&1; then ipset list -n 2>/dev/null | sed 's/^/ipset /'; fi
true
`

// Snapshot reads node's state.
func Snapshot(ctx context.Context, node cluster.Node) (NodeState, error) {
	if node.Exec == nil {
		return NodeState{}, fmt.Errorf("node %s: the provider gave no way to run commands on it", node.Name)
	}
	var out, errb bytes.Buffer
	if err := node.Exec.Run(ctx, &out, &errb, "sh", "-c", snapshotScript); err != nil {
		return NodeState{}, fmt.Errorf("read the state of node %s: %w: %s", node.Name, err, strings.TrimSpace(errb.String()))
	}
	return parseState(node.Name, out.String()), nil
}

func parseState(node, out string) NodeState {
	s := NodeState{Node: node}
	for line := range strings.SplitSeq(out, "\n") {
		kind, rest, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok || rest == "" {
			continue
		}
		switch kind {
		case "path":
			s.Paths = append(s.Paths, rest)
		case "link":
			s.Links = append(s.Links, rest)
		case "route":
			s.Routes = append(s.Routes, rest)
		case "chain":
			s.Chains = append(s.Chains, rest)
		case "rule":
			s.Rules = append(s.Rules, rest)
		case "nft":
			s.NFT = append(s.NFT, rest)
		case "ipset":
			s.IPSets = append(s.IPSets, rest)
		}
	}
	return s
}

// Residue is what a node has that its baseline did not: what a CNI left.
type Residue struct {
	Paths, Links, Routes, Chains, Rules, NFT, IPSets []string
}

// Empty reports whether nothing is left.
func (r Residue) Empty() bool {
	return len(r.Paths)+len(r.Links)+len(r.Routes)+len(r.Chains)+len(r.Rules)+len(r.NFT)+len(r.IPSets) == 0
}

// String lists the residue by kind, briefly.
func (r Residue) String() string {
	if r.Empty() {
		return "nothing"
	}
	var parts []string
	add := func(kind string, xs []string) {
		if len(xs) == 0 {
			return
		}
		shown := xs
		if len(shown) > 6 {
			shown = shown[:6]
		}
		s := fmt.Sprintf("%d %s (%s", len(xs), kind, strings.Join(shown, ", "))
		if len(xs) > len(shown) {
			s += ", …"
		}
		parts = append(parts, s+")")
	}
	add("paths", r.Paths)
	add("links", r.Links)
	add("routes", r.Routes)
	add("iptables chains", r.Chains)
	if len(r.Rules) > 0 {
		// Rules are long; the chains and the count say enough.
		parts = append(parts, fmt.Sprintf("%d iptables rules", len(r.Rules)))
	}
	add("nftables tables", r.NFT)
	add("ipsets", r.IPSets)
	return strings.Join(parts, "; ")
}

// Diff is what now has that base had not. Built-in iptables chains,
// Kubernetes' own chains
// and rules (KUBE-*, made by kube-proxy and the kubelet as Services come
// and go) and the nftables tables of iptables-nft and kube-proxy are not a
// CNI's: they are left alone.
func Diff(base, now NodeState) Residue {
	var r Residue
	r.Paths = extra(base.Paths, now.Paths, nil)
	r.Links = extra(base.Links, now.Links, fallbackDevice)
	r.Routes = extra(base.Routes, now.Routes, nil)
	r.Chains = extra(base.Chains, now.Chains, func(c string) bool {
		name := lastField(c)
		return strings.HasPrefix(name, "KUBE-") || builtinChain(name)
	})
	r.Rules = extra(base.Rules, now.Rules, kubeRule)
	r.NFT = extra(base.NFT, now.NFT, func(t string) bool {
		fam, name, _ := strings.Cut(t, " ")
		if fam == "ip" || fam == "ip6" {
			switch name {
			case "filter", "nat", "mangle", "raw", "security":
				return true // iptables-nft's; its chains are compared above
			}
		}
		return strings.Contains(name, "kube-proxy")
	})
	r.IPSets = extra(base.IPSets, now.IPSets, nil)
	return r
}

// fallbackDevice reports whether link is one a tunnel module creates in
// every network namespace once it is loaded: it cannot be deleted, and a
// fresh node on the same host has it too. cleanupScript takes its
// addresses off.
func fallbackDevice(link string) bool {
	switch link {
	case "tunl0", "gre0", "gretap0", "erspan0", "ip_vti0", "ip6_vti0", "sit0", "ip6tnl0", "ip6gre0":
		return true
	}
	return false
}

// extra returns the members of now not in base, minus those ignore matches.
func extra(base, now []string, ignore func(string) bool) []string {
	in := map[string]bool{}
	for _, b := range base {
		in[b] = true
	}
	var out []string
	for _, n := range now {
		if !in[n] && (ignore == nil || !ignore(n)) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// builtinChain reports the chains every table has (a table that is new
// since the baseline lists them as new): their rules are deleted one by one,
// the chains themselves cannot be.
func builtinChain(name string) bool {
	switch name {
	case "INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING":
		return true
	}
	return false
}

func lastField(s string) string {
	f := strings.Fields(s)
	if len(f) == 0 {
		return ""
	}
	return f[len(f)-1]
}

// kubeRule reports whether an iptables rule "<backend> <table> -A CHAIN
// ..." is in, or jumps to, a Kubernetes chain.
func kubeRule(r string) bool {
	f := strings.Fields(r)
	if len(f) < 4 {
		return false
	}
	if strings.HasPrefix(f[3], "KUBE-") {
		return true
	}
	for i := 4; i+1 < len(f); i++ {
		if (f[i] == "-j" || f[i] == "-g") && strings.HasPrefix(f[i+1], "KUBE-") {
			return true
		}
	}
	return false
}

// cleanupScript removes r from a node: the rules that jump into the CNI's
// chains and the chains themselves (one iptables-restore --noflush per
// backend and table, so kube-proxy's rules are never rewritten), links
// (their routes go with them), leftover routes, nftables tables, ipsets and
// files. Each step goes on past a failure; the caller reads the state again
// to learn what is left.
func cleanupScript(r Residue) string {
	var b strings.Builder
	b.WriteString("set +e\n")
	type tableKey struct{ backend, table string }
	var order []tableKey
	deletes := map[tableKey][]string{}
	chains := map[tableKey][]string{}
	newChain := map[string]bool{}
	for _, c := range r.Chains {
		f := strings.Fields(c)
		if len(f) != 3 {
			continue
		}
		k := tableKey{f[0], f[1]}
		if _, ok := deletes[k]; !ok && chains[k] == nil {
			order = append(order, k)
		}
		chains[k] = append(chains[k], f[2])
		newChain[c] = true
	}
	for _, rule := range r.Rules {
		f := strings.SplitN(rule, " ", 3)
		if len(f) != 3 {
			continue
		}
		k := tableKey{f[0], f[1]}
		ruleChain := strings.Fields(f[2])
		if len(ruleChain) > 1 && newChain[k.backend+" "+k.table+" "+ruleChain[1]] {
			continue // goes with its chain's flush
		}
		if _, ok := deletes[k]; !ok && chains[k] == nil {
			order = append(order, k)
		}
		deletes[k] = append(deletes[k], "-D"+strings.TrimPrefix(f[2], "-A"))
	}
	for _, k := range order {
		var in strings.Builder
		fmt.Fprintf(&in, "*%s\n", k.table)
		for _, d := range deletes[k] {
			in.WriteString(d + "\n")
		}
		for _, c := range chains[k] {
			fmt.Fprintf(&in, "-F %s\n", c)
		}
		for _, c := range chains[k] {
			fmt.Fprintf(&in, "-X %s\n", c)
		}
		in.WriteString("COMMIT\n")
		fmt.Fprintf(&b, "echo %s | base64 -d | %s-restore -w 5 --noflush\n", base64.StdEncoding.EncodeToString([]byte(in.String())), k.backend)
	}
	for _, l := range r.Links {
		// tunl0 and friends belong to their module and cannot be deleted:
		// taking them down and their addresses off is what is left to do.
		fmt.Fprintf(&b, "ip link delete %s 2>/dev/null || { ip addr flush dev %s; ip link set %s down; }\n", shellQuote(l), shellQuote(l), shellQuote(l))
	}
	b.WriteString("if ip link show tunl0 >/dev/null 2>&1; then ip addr flush dev tunl0; ip link set tunl0 down; fi\n")
	for _, rt := range r.Routes {
		fmt.Fprintf(&b, "ip route del %s 2>/dev/null\n", rt)
	}
	for _, t := range r.NFT {
		fmt.Fprintf(&b, "nft delete table %s\n", t)
	}
	for _, s := range r.IPSets {
		fmt.Fprintf(&b, "ipset destroy %s\n", shellQuote(s))
	}
	for _, p := range r.Paths {
		fmt.Fprintf(&b, "rm -rf %s\n", shellQuote(p))
	}
	b.WriteString("true\n")
	return b.String()
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
