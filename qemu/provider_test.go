package qemu

import (
	"context"
	"encoding/base64"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
	kindprov "github.com/cnimatrix/cnimatrix/internal/cluster/kind"
	"github.com/cnimatrix/cnimatrix/internal/images"
	"github.com/cnimatrix/cnimatrix/internal/logx"
)

func TestVMAddresses(t *testing.T) {
	n := &kindprov.Network{Name: "n", Subnet: "172.18.0.0/16", Gateway: "172.18.0.1", Used: []string{"172.18.255.254", "172.18.0.2"}}
	ips, bits, err := vmAddresses(n, 2)
	if err != nil || bits != 16 || len(ips) != 2 || ips[0] != "172.18.255.253" || ips[1] != "172.18.255.252" {
		t.Fatalf("vmAddresses = %v, %d, %v", ips, bits, err)
	}
	if _, _, err := vmAddresses(&kindprov.Network{Name: "s", Subnet: "10.0.0.0/28"}, 1); err == nil {
		t.Error("a /28 was accepted")
	}
	if got := tapName("cnimatrix-12345678-abcdef", 3); len(got) > 15 || !strings.HasPrefix(got, tapBase) {
		t.Errorf("tap name %q", got)
	}
}

// TestProviderCleansUpAfterFailure creates a mixed cluster with too short
// a deadline: the VM boots and kind is midway through the control plane
// when it runs out. Create must fail and leave no QEMU process, tap device
// or node container behind.
func TestProviderCleansUpAfterFailure(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	qemuTest(t, ctx) // builds the disk outside the timed part
	log := logx.New(testWriter{t}, true)
	c, err := images.NewCache(images.DefaultCacheDir(), log)
	if err != nil {
		t.Fatal(err)
	}
	name := cluster.NamePrefix + "qemutest-" + time.Now().Format("150405")
	network := cluster.NamePrefix + "net-qemutest"
	if _, _, err := kindprov.EnsureNetwork(ctx, network); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kindprov.DeleteNetwork(context.Background(), network) })
	nodeImage, err := c.NodeImage(ctx, "v1.37.2", runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	p := NewProvider(log, c, kindprov.New(log))
	workDir := filepath.Join(t.TempDir(), name)
	cctx, ccancel := context.WithTimeout(ctx, 15*time.Second)
	defer ccancel()
	_, err = p.Create(cctx, cluster.Spec{
		Name: name, KubernetesVersion: "v1.37.2", NodeImage: nodeImage,
		Network: network, WorkDir: workDir,
		Nodes: []cluster.NodeSpec{{Role: cluster.ControlPlane, Arch: "amd64"}, {Role: cluster.Worker, Arch: Arch}},
	})
	if err == nil {
		t.Fatal("Create succeeded in 15 s")
	}
	if b, rerr := os.ReadFile(filepath.Join(workDir, name+"-"+Arch+"-1.serial.log")); rerr != nil || len(b) == 0 {
		t.Errorf("the VM never started (serial log: %v, %d bytes)", rerr, len(b))
	}
	t.Logf("Create failed as it should: %v", err)
	procs, err := vmProcesses()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range procs {
		if strings.HasPrefix(v.name, name) {
			t.Errorf("VM %s (pid %d) left running", v.name, v.pid)
		}
	}
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		if strings.HasPrefix(i.Name, tapPrefix(name)) {
			t.Errorf("tap %s left", i.Name)
		}
	}
	if names, err := kindprov.New(log).List(ctx); err != nil || strings.Contains(strings.Join(names, " "), name) {
		t.Errorf("kind clusters %v (%v) include %s", names, err, name)
	}
	// Delete of a cluster that is gone is not an error.
	if err := p.Delete(ctx, name); err != nil {
		t.Error(err)
	}
}

func TestMirrorSetup(t *testing.T) {
	script, err := mirrorSetup(&cluster.Mirror{Endpoint: "http://172.18.0.1:5000", Upstreams: []string{"docker.io", "quay.io"}})
	if err != nil {
		t.Fatal(err)
	}
	want, err := images.ContainerdHosts("172.18.0.1:5000", []string{"docker.io", "quay.io"})
	if err != nil {
		t.Fatal(err)
	}
	for rel, content := range want {
		if !strings.Contains(script, `>"/etc/containerd/certs.d/`+rel+`"`) || !strings.Contains(script, base64.StdEncoding.EncodeToString([]byte(content))) {
			t.Errorf("script does not write %s with its content:\n%s", rel, script)
		}
	}
	if s, err := mirrorSetup(nil); err != nil || s != "" {
		t.Errorf("no mirror: %q, %v", s, err)
	}
	if _, err := mirrorSetup(&cluster.Mirror{Endpoint: "https://x"}); err == nil {
		t.Error("an https endpoint was accepted")
	}
}
