package kind

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
	"github.com/cnimatrix/cnimatrix/internal/images"
	"github.com/cnimatrix/cnimatrix/internal/logx"
)

func TestCheckDockerMissingCLI(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	err := CheckDocker(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no Docker engine reachable") || !strings.Contains(err.Error(), "hack/setup-host.sh") {
		t.Errorf("err = %v", err)
	}
}

func TestCheckDockerNoDaemon(t *testing.T) {
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("no docker CLI")
	}
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
	err := CheckDocker(context.Background())
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), "no Docker engine reachable") || !strings.Contains(err.Error(), "nonexistent") {
		t.Errorf("err = %v", err)
	}
}

func TestEnvLease(t *testing.T) {
	t.Setenv(networkEnv, "outer")
	r1 := netEnv.acquire("a")
	r2 := netEnv.acquire("a") // same network: shared, no wait
	if os.Getenv(networkEnv) != "a" {
		t.Fatalf("env = %q", os.Getenv(networkEnv))
	}
	got := make(chan string)
	released := make(chan struct{})
	go func() {
		r := netEnv.acquire("b") // waits for both holders of "a"
		got <- os.Getenv(networkEnv)
		r()
		close(released)
	}()
	r1()
	select {
	case v := <-got:
		t.Fatalf("acquired %q while a was held", v)
	case <-time.After(50 * time.Millisecond):
	}
	r2()
	if v := <-got; v != "b" {
		t.Errorf("env = %q, want b", v)
	}
	<-released // the check below raced the goroutine's release before
	if v := os.Getenv(networkEnv); v != "outer" {
		t.Errorf("env after the last release = %q, want the value from before", v)
	}
}

// TestCreateDelete creates a control-plane + worker cluster from the node
// image built by images.NodeImage, checks that both nodes register and run
// commands, deletes it and checks that nothing of it remains.
func TestCreateDelete(t *testing.T) {
	if testing.Short() {
		t.Skip("creates a kind cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	if err := CheckDocker(ctx); err != nil {
		t.Skip(err)
	}
	log := logx.New(os.Stderr, testing.Verbose())
	cache, err := images.NewCache(images.DefaultCacheDir(), log)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := cache.NodeImage(ctx, "v1.37.2", runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}

	const network = "cnimatrix-test-kind"
	gw, bridge, err := EnsureNetwork(ctx, network)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("network %s: gateway %s, bridge %s", network, gw, bridge)
	if gw2, br2, err := EnsureNetwork(ctx, network); err != nil || gw2 != gw || br2 != bridge {
		t.Errorf("second EnsureNetwork = %s %s %v", gw2, br2, err)
	}
	if _, err := os.Stat("/sys/class/net/" + bridge); err != nil {
		t.Errorf("bridge %s: %v", bridge, err)
	}
	t.Cleanup(func() {
		if err := DeleteNetwork(context.Background(), network); err != nil {
			t.Errorf("delete network: %v", err)
		}
	})

	p := New(log)
	spec := cluster.Spec{
		Name:              "cnimatrix-kindtest",
		KubernetesVersion: "v1.37.2",
		Nodes:             []cluster.NodeSpec{{Role: cluster.ControlPlane}, {Role: cluster.Worker}},
		NodeImage:         ref,
		PodSubnet:         "10.244.0.0/16",
		ServiceSubnet:     "10.96.0.0/16",
		Network:           network,
		// Nothing listens there: the test only checks that the hosts files
		// are mounted where containerd looks.
		Mirror:  &cluster.Mirror{Endpoint: "http://" + gw + ":5999", Upstreams: []string{"docker.io", "quay.io", "registry.k8s.io"}},
		WorkDir: t.TempDir(),
	}
	_ = p.Delete(ctx, spec.Name) // leftovers of an interrupted run
	t0 := time.Now()
	c, err := p.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("created %s in %s", c.Name, time.Since(t0).Truncate(100*time.Millisecond))
	deleted := false
	t.Cleanup(func() {
		if !deleted {
			_ = p.Delete(context.Background(), spec.Name)
		}
	})

	if len(c.Nodes) != 2 || c.Nodes[0].Role != cluster.ControlPlane || c.Nodes[1].Role != cluster.Worker {
		t.Fatalf("nodes = %+v", c.Nodes)
	}
	for _, n := range c.Nodes {
		t.Logf("node %s %s %s %s", n.Name, n.Role, n.Arch, n.InternalIP)
		if n.InternalIP == "" || n.Arch != runtime.GOARCH {
			t.Errorf("node %+v", n)
		}
	}
	if err := DeleteNetwork(ctx, network); err == nil || !strings.Contains(err.Error(), "still has containers") {
		t.Errorf("DeleteNetwork with nodes attached: err = %v", err)
	}

	cfg, err := c.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// kind returns after kubeadm join; registration may trail by a moment.
	var names []string
	for delay := 200 * time.Millisecond; ; delay = min(delay*2, 5*time.Second) {
		nl, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		names = names[:0]
		if err == nil {
			for _, n := range nl.Items {
				names = append(names, n.Name)
			}
		}
		if len(names) == 2 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("nodes registered: %v (err %v)", names, err)
		case <-time.After(delay):
		}
	}
	slices.Sort(names)
	if want := []string{c.Nodes[0].Name, c.Nodes[1].Name}; !slices.Equal(names, want) {
		t.Errorf("registered nodes %v, want %v", names, want)
	}
	t.Logf("nodes registered %s after create started", time.Since(t0).Truncate(100*time.Millisecond))

	var out bytes.Buffer
	if err := c.Nodes[1].Exec.Run(ctx, &out, nil, "uname", "-m"); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[runtime.GOARCH]
	if got := strings.TrimSpace(out.String()); got != want {
		t.Errorf("uname -m on %s = %q, want %q", c.Nodes[1].Name, got, want)
	}
	out.Reset()
	if err := c.Nodes[1].Exec.Run(ctx, &out, nil, "cat", "/etc/containerd/certs.d/registry.k8s.io/hosts.toml"); err != nil {
		t.Errorf("mirror config on node: %v", err)
	} else if !strings.Contains(out.String(), gw+":5999") {
		t.Errorf("mirror config on node:\n%s", out.String())
	}
	if err := c.Nodes[0].Exec.Run(ctx, nil, nil, "false"); err == nil {
		t.Error("failing command reported success")
	}

	list, err := p.List(ctx)
	if err != nil || !slices.Contains(list, spec.Name) {
		t.Errorf("List = %v, %v", list, err)
	}
	if err := p.Delete(ctx, spec.Name); err != nil {
		t.Fatal(err)
	}
	deleted = true
	left, err := nodeContainers(ctx, spec.Name)
	if err != nil || len(left) != 0 {
		t.Errorf("containers left after delete: %v %v", left, err)
	}
	if err := p.Delete(ctx, spec.Name); err != nil {
		t.Errorf("second delete: %v", err)
	}
}

// TestCreateCancelled cancels a create midway (during kubeadm init) and
// checks that Create returns promptly with the context's error and leaves no
// node behind.
func TestCreateCancelled(t *testing.T) {
	if testing.Short() {
		t.Skip("creates a kind cluster")
	}
	bg := context.Background()
	if err := CheckDocker(bg); err != nil {
		t.Skip(err)
	}
	log := logx.New(os.Stderr, testing.Verbose())
	cache, err := images.NewCache(images.DefaultCacheDir(), log)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := cache.NodeImage(bg, "v1.37.2", runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	const network = "cnimatrix-test-kindcancel"
	if _, _, err := EnsureNetwork(bg, network); err != nil {
		t.Fatal(err)
	}
	p := New(log)
	spec := cluster.Spec{
		Name: "cnimatrix-kindcancel", KubernetesVersion: "v1.37.2", NodeImage: ref,
		Nodes:     []cluster.NodeSpec{{Role: cluster.ControlPlane}},
		PodSubnet: "10.244.0.0/16", ServiceSubnet: "10.96.0.0/16", WorkDir: t.TempDir(), Network: network,
	}
	t.Cleanup(func() {
		_ = p.Delete(bg, spec.Name)
		if err := DeleteNetwork(bg, network); err != nil {
			t.Errorf("delete network: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(bg, 8*time.Second)
	defer cancel()
	t0 := time.Now()
	_, err = p.Create(ctx, spec)
	if err == nil || !strings.Contains(err.Error(), context.DeadlineExceeded.Error()) {
		t.Fatalf("err = %v, want the context's deadline", err)
	}
	t.Logf("cancelled create returned after %s: %v", time.Since(t0).Truncate(100*time.Millisecond), err)
	if d := time.Since(t0); d > 60*time.Second {
		t.Errorf("cancelled create took %s", d)
	}
	left, err := nodeContainers(bg, spec.Name)
	if err != nil || len(left) != 0 {
		t.Errorf("containers left after cancelled create: %v %v", left, err)
	}
}
