package uninstall

import (
	"encoding/base64"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// Shaped like what snapshotScript printed on a kind node before and after
// flannel (iptables-nft backend; kube-proxy's chains appear meanwhile too).
const before = `path /opt/cni/bin/bridge
path /opt/cni/bin/host-local
link lo
link eth0
route default via 172.26.0.1 dev eth0
route 172.26.0.0/16 dev eth0 proto kernel scope link src 172.26.0.3
chain iptables-nft nat DOCKER_OUTPUT
chain iptables-nft nat POSTROUTING
rule iptables-nft nat -A POSTROUTING -d 127.0.0.11/32 -j DOCKER_POSTROUTING
`

const after = before + `path /etc/cni/net.d/10-flannel.conflist
path /opt/cni/bin/flannel
path /run/flannel
path /run/flannel/subnet.env
path /var/lib/cni/networks
link flannel.1
link cni0
link veth1a2b3c4d
link tunl0
route 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink
chain iptables-nft nat FLANNEL-POSTRTG
chain iptables-nft filter FLANNEL-FWD
chain iptables-nft filter FORWARD
chain iptables-nft nat KUBE-SERVICES
rule iptables-nft nat -A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
rule iptables-nft nat -A FLANNEL-POSTRTG -s 10.244.0.0/24 -j RETURN
rule iptables-nft filter -A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD
rule iptables-nft filter -A FORWARD -s 10.244.0.0/16 -j ACCEPT
rule iptables-nft nat -A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
rule iptables-nft nat -A KUBE-SERVICES -j KUBE-NODEPORTS
nft ip nat
nft inet flannel
ipset cali40all-hosts
`

func TestDiffFindsWhatTheCNILeftAndNotKubernetes(t *testing.T) {
	r := Diff(parseState("n", before), parseState("n", after))
	if want := []string{"/etc/cni/net.d/10-flannel.conflist", "/opt/cni/bin/flannel", "/run/flannel", "/run/flannel/subnet.env", "/var/lib/cni/networks"}; !slices.Equal(r.Paths, want) {
		t.Errorf("paths %q, want %q", r.Paths, want)
	}
	// tunl0 comes with the ipip module in every namespace: not a leftover.
	if want := []string{"cni0", "flannel.1", "veth1a2b3c4d"}; !slices.Equal(r.Links, want) {
		t.Errorf("links %q, want %q", r.Links, want)
	}
	if want := []string{"iptables-nft filter FLANNEL-FWD", "iptables-nft nat FLANNEL-POSTRTG"}; !slices.Equal(r.Chains, want) {
		t.Errorf("chains %q, want %q (KUBE-* are kube-proxy's, FORWARD is built in)", r.Chains, want)
	}
	for _, rule := range r.Rules {
		if strings.Contains(rule, "KUBE-") {
			t.Errorf("a Kubernetes rule is in the residue: %s", rule)
		}
	}
	if len(r.Rules) != 4 {
		t.Errorf("rules %q, want the 4 flannel rules", r.Rules)
	}
	if want := []string{"inet flannel"}; !slices.Equal(r.NFT, want) {
		t.Errorf("nft tables %q, want %q (ip nat is iptables-nft's)", r.NFT, want)
	}
	if len(r.Routes) != 1 || len(r.IPSets) != 1 {
		t.Errorf("routes %q ipsets %q", r.Routes, r.IPSets)
	}
	if r.Empty() || !strings.Contains(r.String(), "2 iptables chains") {
		t.Errorf("String() = %q", r.String())
	}
	if !Diff(parseState("n", after), parseState("n", after)).Empty() {
		t.Error("a state has a residue against itself")
	}
	if got := (Residue{}).String(); got != "nothing" {
		t.Errorf("empty residue reads %q", got)
	}
}

func TestCleanupScript(t *testing.T) {
	r := Diff(parseState("n", before), parseState("n", after))
	script := cleanupScript(r)
	// One restore per backend and table, rules deleted before the chains
	// are flushed, all chains flushed before any is deleted; rules inside
	// a chain of the CNI go with its flush.
	restores := map[string]string{}
	for _, m := range regexp.MustCompile(`echo (\S+) \| base64 -d \| (\S+)-restore -w 5 --noflush`).FindAllStringSubmatch(script, -1) {
		in, err := base64.StdEncoding.DecodeString(m[1])
		if err != nil {
			t.Fatal(err)
		}
		table := strings.SplitN(string(in), "\n", 2)[0]
		restores[m[2]+" "+table] = string(in)
	}
	wantNat := "*nat\n-D POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG\n-F FLANNEL-POSTRTG\n-X FLANNEL-POSTRTG\nCOMMIT\n"
	if got := restores["iptables-nft *nat"]; got != wantNat {
		t.Errorf("nat restore:\n%s\nwant:\n%s", got, wantNat)
	}
	filter := restores["iptables-nft *filter"]
	wantFilter := "*filter\n-D FORWARD -m comment --comment \"flanneld forward\" -j FLANNEL-FWD\n-D FORWARD -s 10.244.0.0/16 -j ACCEPT\n-F FLANNEL-FWD\n-X FLANNEL-FWD\nCOMMIT\n"
	if filter != wantFilter {
		t.Errorf("filter restore:\n%s\nwant:\n%s", filter, wantFilter)
	}
	if len(restores) != 2 {
		t.Errorf("%d restores, want 2: %v", len(restores), restores)
	}
	for _, want := range []string{"ip link delete 'flannel.1'", "ip route del 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink", "nft delete table inet flannel", "ipset destroy 'cali40all-hosts'", "rm -rf '/etc/cni/net.d/10-flannel.conflist'", "ip addr flush dev tunl0"} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
	for _, never := range []string{"KUBE-", "/opt/cni/bin/bridge", "eth0;"} {
		if strings.Contains(script, never) {
			t.Errorf("script touches %q:\n%s", never, script)
		}
	}
}

func TestShellQuote(t *testing.T) {
	if got := shellQuote("a'b"); got != `'a'\''b'` {
		t.Errorf("got %s", got)
	}
}

// Shaped like a node after Calico (IPIP, iptables-legacy in calico-node's
// image while the node's own tools are nft): cali- chains and their jumps
// from the built-in chains, tunl0 with an address, workload veths, BIRD's
// routes to the other nodes' blocks, ipsets and the CNI's files.
const calicoAfter = before + `path /etc/cni/net.d/10-calico.conflist
path /etc/cni/net.d/calico-kubeconfig
path /opt/cni/bin/calico
path /opt/cni/bin/calico-ipam
path /var/lib/calico
path /var/lib/calico/nodename
path /var/log/calico
link tunl0
link cali3f1a2b4c5d6
link vxlan.calico
route 192.168.33.0/26 via 172.26.0.4 dev tunl0 proto bird onlink
route blackhole 192.168.97.0/26 proto bird
chain iptables-legacy filter INPUT
chain iptables-legacy filter cali-INPUT
chain iptables-legacy filter cali-FORWARD
chain iptables-legacy nat cali-nat-outgoing
rule iptables-legacy filter -A INPUT -m comment --comment "cali:Cz_u1IQiXIMmKD4c" -j cali-INPUT
rule iptables-legacy filter -A cali-INPUT -p ipencap -m comment --comment "cali:PajejrV4aFdkZojI" -j ACCEPT
ipset cali40all-ipam-pools
ipset cali40masq-ipam-pools
`

func TestDiffCalicoShaped(t *testing.T) {
	r := Diff(parseState("n", before), parseState("n", calicoAfter))
	if want := []string{"iptables-legacy filter cali-FORWARD", "iptables-legacy filter cali-INPUT", "iptables-legacy nat cali-nat-outgoing"}; !slices.Equal(r.Chains, want) {
		t.Errorf("chains %q, want %q", r.Chains, want)
	}
	if want := []string{"cali3f1a2b4c5d6", "vxlan.calico"}; !slices.Equal(r.Links, want) {
		t.Errorf("links %q, want %q", r.Links, want)
	}
	if len(r.Routes) != 2 || len(r.IPSets) != 2 || len(r.Paths) != 7 {
		t.Errorf("routes %q ipsets %q paths %q", r.Routes, r.IPSets, r.Paths)
	}
	script := cleanupScript(r)
	for _, want := range []string{"iptables-legacy-restore -w 5 --noflush", "ip route del blackhole 192.168.97.0/26 proto bird", "ip link delete 'vxlan.calico'", "ipset destroy 'cali40all-ipam-pools'", "rm -rf '/opt/cni/bin/calico-ipam'", "ip addr flush dev tunl0"} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
	// The jump from INPUT is deleted by rule, the chain's own rule goes
	// with its flush.
	m := regexp.MustCompile(`echo (\S+) \| base64 -d \| iptables-legacy-restore`).FindAllStringSubmatch(script, -1)
	var filter string
	for _, x := range m {
		in, _ := base64.StdEncoding.DecodeString(x[1])
		if strings.HasPrefix(string(in), "*filter") {
			filter = string(in)
		}
	}
	want := "*filter\n-D INPUT -m comment --comment \"cali:Cz_u1IQiXIMmKD4c\" -j cali-INPUT\n-F cali-FORWARD\n-F cali-INPUT\n-X cali-FORWARD\n-X cali-INPUT\nCOMMIT\n"
	if filter != want {
		t.Errorf("filter restore:\n%s\nwant:\n%s", filter, want)
	}
}
