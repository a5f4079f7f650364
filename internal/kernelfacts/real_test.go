package kernelfacts

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
)

// hostExec runs commands on this machine, in a network namespace of their
// own so the link tests cannot touch the host's interfaces.
type hostExec struct{}

func (hostExec) Run(ctx context.Context, stdout, stderr io.Writer, argv ...string) error {
	cmd := exec.CommandContext(ctx, "unshare", append([]string{"-n", "--"}, argv...)...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	return cmd.Run()
}

// dockerExec runs commands in a kind node container.
type dockerExec struct{ container string }

func (d dockerExec) Run(ctx context.Context, stdout, stderr io.Writer, argv ...string) error {
	cmd := exec.CommandContext(ctx, "docker", append([]string{"exec", d.container}, argv...)...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("docker exec %s: %w", d.container, err)
	}
	return nil
}

// hostConfig reads an option of the running kernel's config: "y", "m",
// "n" (not set) or "" (no config to read). It is the expectation the probes
// are held to, read without ip or the module files they use.
func hostConfig(t *testing.T, opt string) string {
	t.Helper()
	f, err := os.Open("/proc/config.gz")
	if err != nil {
		return ""
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return ""
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		return ""
	}
	if bytes.Contains(data, []byte("# CONFIG_"+opt+" is not set\n")) {
		return "n"
	}
	if m := regexp.MustCompile(`(?m)^CONFIG_` + opt + `=([ym])$`).FindSubmatch(data); m != nil {
		return string(m[1])
	}
	return "n"
}

// checkAgainstHostConfig holds a feature to the kernel config: built in
// means available; not configured means unavailable, definitively.
func checkAgainstHostConfig(t *testing.T, ft Feature, opt string) {
	t.Helper()
	switch hostConfig(t, opt) {
	case "y":
		if !ft.Available || !ft.Definitive {
			t.Errorf("%s: CONFIG_%s=y but probe says %+v", ft.Name, opt, ft)
		}
	case "n":
		if ft.Available || !ft.Definitive {
			t.Errorf("%s: CONFIG_%s is not set but probe says %+v", ft.Name, opt, ft)
		}
	default:
		t.Logf("%s: no usable kernel config to hold the probe to (%+v)", ft.Name, ft)
	}
}

// TestScriptOnHost runs the probe script against this machine's kernel, in
// a throwaway network namespace.
func TestScriptOnHost(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create links")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("no unshare")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f, err := Probe(ctx, cluster.Node{Name: "host", Exec: hostExec{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s in %s", f, f.Took)
	checkAgainstHostConfig(t, f.IPIP, "NET_IPIP")
	checkAgainstHostConfig(t, f.VXLAN, "VXLAN")
	checkAgainstHostConfig(t, f.WireGuard, "WIREGUARD")
}

// TestRealKindNode probes a node of a running kind cluster
// ($CNIMATRIX_KIND_NODE, else the first cnimatrix kind node container
// found), holds the result to this machine's kernel config (a kind node runs
// the host's kernel) and checks that no test link is left on the node.
func TestRealKindNode(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a kind node")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("no docker")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	name := os.Getenv("CNIMATRIX_KIND_NODE")
	if name == "" {
		out, err := exec.CommandContext(ctx, "docker", "ps", "--filter", "label=io.x-k8s.kind.cluster", "--format", "{{.Names}}").Output()
		if err != nil {
			t.Skipf("docker ps: %v", err)
		}
		for _, n := range strings.Fields(string(out)) {
			if strings.HasPrefix(n, cluster.NamePrefix) {
				name = n
				break
			}
		}
	}
	if name == "" {
		t.Skip("no kind node running; set CNIMATRIX_KIND_NODE or keep a cluster (cnimatrix run --keep)")
	}
	ex := dockerExec{container: name}
	f, err := Probe(ctx, cluster.Node{Name: name, Exec: ex})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s in %s", f, f.Took)
	for _, ft := range []Feature{f.IPIP, f.VXLAN, f.WireGuard} {
		t.Logf("  %s: %s", ft.Name, strings.Join(ft.Evidence, "; "))
	}
	checkAgainstHostConfig(t, f.IPIP, "NET_IPIP")
	checkAgainstHostConfig(t, f.VXLAN, "VXLAN")
	if f.IPTablesBackend != "nf_tables" && f.IPTablesBackend != "legacy" {
		t.Errorf("iptables backend %q (%q)", f.IPTablesBackend, f.IPTablesVersion)
	}
	if uname, err := exec.CommandContext(ctx, "uname", "-r").Output(); err == nil && strings.TrimSpace(string(uname)) != f.Release {
		t.Errorf("node kernel %q, host %q: a kind node runs the host's kernel", f.Release, strings.TrimSpace(string(uname)))
	}
	var links bytes.Buffer
	if err := ex.Run(ctx, &links, nil, "ip", "-o", "link", "show"); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(links.String(), "cmx") {
		t.Errorf("test links left on %s:\n%s", name, links.String())
	}
	err = Require([]Facts{f}, EncapIPIP)
	t.Logf("Require IPIP: %v", err)
	if !f.IPIP.Available && (err == nil || !strings.Contains(err.Error(), "kernel-feature: node "+name)) {
		t.Errorf("IPIP on a node without ipip: %v", err)
	}
	if err := Require([]Facts{f}, EncapVXLAN); f.VXLAN.Available && err != nil {
		t.Errorf("VXLAN: %v", err)
	}
}
