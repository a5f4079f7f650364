// Package kind is the cluster provider whose nodes are containers of the
// host's arch, created with kind's Go API (sigs.k8s.io/kind/pkg/cluster)
// from a node image that cnimatrix builds offline.
//
// testcontainers-go is not used here or in its tests: the node containers
// are kind's to create and delete (its Go API), the Docker network is the
// one kind's nodes expect (EnsureNetwork makes it as kind does, with a
// subnet and gateway the VM workers share), and the rest is docker CLI
// calls through kind's exec package (RunError carries the command and its
// output). A testcontainers network or container would be a second owner of
// the same objects. The e2e suite's leftover check lists what a run left by
// its run ID, which no library does for us.
package kind

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	kindcluster "sigs.k8s.io/kind/pkg/cluster"
	kindexec "sigs.k8s.io/kind/pkg/exec"
	kindlog "sigs.k8s.io/kind/pkg/log"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
	"github.com/cnimatrix/cnimatrix/internal/hostcmd"
	"github.com/cnimatrix/cnimatrix/internal/logx"
)

// Labels kind puts on its node containers.
const (
	kindClusterLabel = "io.x-k8s.kind.cluster"
	kindRoleLabel    = "io.x-k8s.kind.role"
)

// networkEnv is how kind's docker provider is told which network to use;
// it has no API for it and reads the variable while provisioning nodes.
const networkEnv = "KIND_EXPERIMENTAL_DOCKER_NETWORK"

// Provider creates kind clusters.
type Provider struct {
	log *logx.Logger
	// Retain keeps the node containers of a failed Create for inspection
	// (kind's --retain); the caller then deletes them. A Create cancelled
	// through its context still deletes them, since cancelling is the only
	// way to stop kind midway.
	Retain bool
}

var _ cluster.Provider = (*Provider)(nil)

// New returns a kind provider that reports progress to log.
func New(log *logx.Logger) *Provider {
	if log == nil {
		log = logx.Discard()
	}
	return &Provider{log: log.With("kind")}
}

// Name implements cluster.Provider.
func (p *Provider) Name() string { return "kind" }

// Layout implements cluster.Provider: every node a kind node of arch.
func (p *Provider) Layout(arch string, count int) []cluster.NodeSpec {
	return cluster.UniformLayout(arch, count)
}

// NodeKind implements cluster.Provider.
func (p *Provider) NodeKind(cluster.NodeSpec) string { return "kind node" }

func (p *Provider) kind() *kindcluster.Provider {
	return kindcluster.NewProvider(kindcluster.ProviderWithDocker(), kindcluster.ProviderWithLogger(kindLogger{p.log}))
}

// Create implements cluster.Provider. It returns once the API server
// answers /readyz; nodes are registered by then (kind runs kubeadm join
// before returning) but not Ready, since no CNI is installed.
func (p *Provider) Create(ctx context.Context, spec cluster.Spec) (_ *cluster.Cluster, err error) {
	done := p.log.Phase(fmt.Sprintf("create cluster %s (%d nodes, %s)", spec.Name, len(spec.Nodes), spec.NodeImage))
	defer func() { done(err) }()

	if err := validateSpec(spec); err != nil {
		return nil, err
	}
	if err := checkNodeImage(ctx, spec); err != nil {
		return nil, err
	}
	facts, err := DetectHostFacts()
	if err != nil {
		return nil, err
	}
	p.log.Debugf("host facts: cgroup v1=%v, no CAP_SYS_RESOURCE=%v", facts.CgroupV1, facts.NoSysResource)
	workDir := spec.WorkDir
	if workDir == "" {
		if workDir, err = os.MkdirTemp("", spec.Name+"-"); err != nil {
			return nil, fmt.Errorf("work dir for %s: %w", spec.Name, err)
		}
	} else if err := os.MkdirAll(workDir, 0o755); err != nil {
		return nil, fmt.Errorf("work dir for %s: %w", spec.Name, err)
	}
	certsDir := ""
	if spec.Mirror != nil {
		certsDir = filepath.Join(workDir, "certs.d")
		if err := writeMirrorHosts(certsDir, spec.Mirror); err != nil {
			return nil, fmt.Errorf("registry mirror config for %s: %w", spec.Name, err)
		}
	}
	cfg, err := buildConfig(spec, facts, certsDir)
	if err != nil {
		return nil, err
	}
	network := spec.Network
	if network == "" {
		network = "kind" // kind's own default network
	} else if _, _, err := EnsureNetwork(ctx, network); err != nil {
		return nil, err
	}

	kubeconfigPath := filepath.Join(workDir, "kubeconfig")
	kp := p.kind()
	if err := p.runKindCreate(ctx, kp, spec, network, kubeconfigPath, cfg); err != nil {
		return nil, err
	}
	// From here on the nodes exist: a failure must not leave them behind.
	defer func() {
		if err != nil && !p.Retain {
			if derr := p.Delete(context.WithoutCancel(ctx), spec.Name); derr != nil {
				p.log.Infof("cleanup of %s after failure: %v", spec.Name, derr)
			}
		}
	}()

	kc, err := kp.KubeConfig(spec.Name, false)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig of %s: %w", spec.Name, withOutput(err))
	}
	c := &cluster.Cluster{Name: spec.Name, Provider: p.Name(), Kubeconfig: []byte(kc)}
	if err := os.WriteFile(kubeconfigPath, c.Kubeconfig, 0o600); err != nil {
		return nil, fmt.Errorf("write kubeconfig of %s: %w", spec.Name, err)
	}
	if err := waitAPIServer(ctx, c); err != nil {
		return nil, err
	}
	if c.Nodes, err = p.nodes(ctx, spec, network); err != nil {
		return nil, err
	}
	return c, nil
}

// checkNodeImage fails early, with a clear message, when the node image is
// not in Docker (kind would try to pull it) or was built for another
// Kubernetes version than the spec asks for.
func checkNodeImage(ctx context.Context, spec cluster.Spec) error {
	out, err := docker(ctx, "image", "inspect", "--format", `{{index .Config.Labels "io.cnimatrix.kubernetes"}}`, spec.NodeImage)
	if err != nil {
		if isNoSuchObject(err) {
			return fmt.Errorf("node image %s is not in Docker (build it with images.NodeImage)", spec.NodeImage)
		}
		return fmt.Errorf("node image %s: %w", spec.NodeImage, err)
	}
	v := strings.TrimSpace(string(out))
	if v != "" && v != "<no value>" && spec.KubernetesVersion != "" && v != spec.KubernetesVersion {
		return fmt.Errorf("node image %s is Kubernetes %s, cluster %s asks for %s", spec.NodeImage, v, spec.Name, spec.KubernetesVersion)
	}
	return nil
}

// runKindCreate runs kind's blocking Create so that ctx can stop it: on
// cancellation the node containers are removed, which makes kind's next
// command fail and Create return.
func (p *Provider) runKindCreate(ctx context.Context, kp *kindcluster.Provider, spec cluster.Spec, network, kubeconfigPath string, cfg *v1alpha4.Cluster) error {
	release := netEnv.acquire(network)
	defer release()

	errc := make(chan error, 1)
	go func() {
		errc <- kp.Create(spec.Name,
			kindcluster.CreateWithV1Alpha4Config(cfg),
			kindcluster.CreateWithNodeImage(spec.NodeImage),
			kindcluster.CreateWithRetain(p.Retain),
			// Readiness needs a CNI; the checks wait for it, not kind.
			kindcluster.CreateWithWaitForReady(0),
			kindcluster.CreateWithKubeconfigPath(kubeconfigPath),
			kindcluster.CreateWithDisplayUsage(false),
			kindcluster.CreateWithDisplaySalutation(false),
		)
	}()
	select {
	case err := <-errc:
		if err != nil {
			return fmt.Errorf("kind create %s: %w", spec.Name, withOutput(err))
		}
		return nil
	case <-ctx.Done():
		p.log.Infof("create of %s cancelled: removing its nodes", spec.Name)
		cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		// Nodes may still be appearing while kind provisions; remove until
		// kind gives up.
		for {
			_ = p.Delete(cleanup, spec.Name)
			select {
			case <-errc:
				_ = p.Delete(cleanup, spec.Name)
				return fmt.Errorf("create %s: %w", spec.Name, ctx.Err())
			case <-cleanup.Done():
				return fmt.Errorf("create %s: %w (kind did not stop)", spec.Name, ctx.Err())
			case <-time.After(time.Second):
			}
		}
	}
}

// Delete implements cluster.Provider: it removes the node containers (and
// their anonymous /var volumes). The kubeconfig in the work dir belongs to
// the caller.
func (p *Provider) Delete(ctx context.Context, name string) (err error) {
	names, err := nodeContainers(ctx, name)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return nil
	}
	done := p.log.Phase("delete cluster " + name)
	defer func() { done(err) }()
	_, err = docker(ctx, append([]string{"rm", "-f", "-v"}, names...)...)
	if err != nil && strings.Contains(err.Error(), "did not receive an exit event") {
		// A node whose processes cannot die: a cgroup left frozen (thaw.go).
		n, terr := thawNodes(ctx, names)
		p.log.Infof("delete cluster %s: a node did not die on kill; thawed %d frozen cgroup(s) (%v), trying again", name, n, terr)
		_, err = docker(ctx, append([]string{"rm", "-f", "-v"}, names...)...)
	}
	if err != nil && !isNoSuchObject(err) {
		return fmt.Errorf("delete cluster %s: %w", name, err)
	}
	return nil
}

// List implements cluster.Provider: kind clusters whose name starts with
// cluster.NamePrefix.
func (p *Provider) List(ctx context.Context) ([]string, error) {
	out, err := docker(ctx, "ps", "-a", "--filter", "label="+kindClusterLabel,
		"--format", fmt.Sprintf(`{{.Label %q}}`, kindClusterLabel))
	if err != nil {
		return nil, fmt.Errorf("list kind clusters: %w", err)
	}
	seen := map[string]bool{}
	var names []string
	for _, l := range strings.Fields(string(out)) {
		if strings.HasPrefix(l, cluster.NamePrefix) && !seen[l] {
			seen[l] = true
			names = append(names, l)
		}
	}
	sort.Strings(names)
	return names, nil
}

// nodeContainers lists the containers of kind cluster name, stopped ones too.
func nodeContainers(ctx context.Context, name string) ([]string, error) {
	out, err := docker(ctx, "ps", "-a", "--filter", fmt.Sprintf("label=%s=%s", kindClusterLabel, name), "--format", "{{.Names}}")
	if err != nil {
		return nil, fmt.Errorf("list nodes of %s: %w", name, err)
	}
	return strings.Fields(string(out)), nil
}

// containerInfo is the part of `docker inspect` read for each node.
type containerInfo struct {
	Name   string `json:"Name"`
	Config struct {
		Labels map[string]string `json:"Labels"`
	} `json:"Config"`
	NetworkSettings struct {
		Networks map[string]struct {
			IPAddress string `json:"IPAddress"`
		} `json:"Networks"`
	} `json:"NetworkSettings"`
}

// nodes describes the cluster's Kubernetes nodes (kind names each node
// after its container), control plane first.
func (p *Provider) nodes(ctx context.Context, spec cluster.Spec, network string) ([]cluster.Node, error) {
	names, err := nodeContainers(ctx, spec.Name)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("cluster %s has no node containers", spec.Name)
	}
	out, err := docker(ctx, append([]string{"inspect", "--type", "container"}, names...)...)
	if err != nil {
		return nil, fmt.Errorf("inspect nodes of %s: %w", spec.Name, err)
	}
	var infos []containerInfo
	if err := json.Unmarshal(out, &infos); err != nil {
		return nil, fmt.Errorf("decode nodes of %s: %w", spec.Name, err)
	}
	var nodes []cluster.Node
	for _, in := range infos {
		name := strings.TrimPrefix(in.Name, "/")
		var role cluster.Role
		switch in.Config.Labels[kindRoleLabel] {
		case "control-plane":
			role = cluster.ControlPlane
		case "worker":
			role = cluster.Worker
		default: // e.g. kind's external load balancer: not a Kubernetes node
			continue
		}
		ep, ok := in.NetworkSettings.Networks[network]
		if !ok || ep.IPAddress == "" {
			return nil, fmt.Errorf("node %s has no IPv4 address on docker network %s", name, network)
		}
		nodes = append(nodes, cluster.Node{
			Name: name, Role: role, Arch: runtime.GOARCH, InternalIP: ep.IPAddress,
			Exec: dockerExec{container: name},
		})
	}
	sort.Slice(nodes, func(i, j int) bool {
		if (nodes[i].Role == cluster.ControlPlane) != (nodes[j].Role == cluster.ControlPlane) {
			return nodes[i].Role == cluster.ControlPlane
		}
		return nodes[i].Name < nodes[j].Name
	})
	if len(nodes) != len(spec.Nodes) {
		return nil, fmt.Errorf("cluster %s has %d nodes, want %d", spec.Name, len(nodes), len(spec.Nodes))
	}
	return nodes, nil
}

// waitAPIServer polls /readyz with backoff: kind has returned after kubeadm,
// but the external port mapping may lag a moment behind.
func waitAPIServer(ctx context.Context, c *cluster.Cluster) error {
	cfg, err := c.RESTConfig()
	if err != nil {
		return err
	}
	cfg.Timeout = 10 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("client for %s: %w", c.Name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	delay := 200 * time.Millisecond
	for {
		_, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("API server of %s not ready: %w (last error: %v)", c.Name, ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}

// withOutput appends the tail of a failed command's output, which kind
// keeps in its RunError but does not print.
func withOutput(err error) error {
	if re := kindexec.RunErrorForError(err); re != nil && len(re.Output) > 0 {
		return fmt.Errorf("%w\n%s", err, hostcmd.LastLines(string(re.Output), 25))
	}
	return err
}

// envLease serialises the process-wide network variable: creates on the
// same network run concurrently, a create on another network waits.
type envLease struct {
	mu    sync.Mutex
	cond  *sync.Cond
	value string
	users int
	// the variable as it was before the first holder, restored after the last
	prev    string
	hadPrev bool
}

var netEnv = func() *envLease { l := &envLease{}; l.cond = sync.NewCond(&l.mu); return l }()

func (l *envLease) acquire(value string) (release func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.users > 0 && l.value != value {
		l.cond.Wait()
	}
	if l.users == 0 {
		l.value = value
		l.prev, l.hadPrev = os.LookupEnv(networkEnv)
		os.Setenv(networkEnv, value)
	}
	l.users++
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.users--
		if l.users == 0 {
			if l.hadPrev {
				os.Setenv(networkEnv, l.prev)
			} else {
				os.Unsetenv(networkEnv)
			}
			l.cond.Broadcast()
		}
	}
}

// kindLogger routes kind's messages to the verbose log: its status lines
// duplicate cnimatrix's phases and its warnings (experimental network,
// cgroup v1) are expected here. Errors are always shown.
type kindLogger struct{ l *logx.Logger }

var _ kindlog.Logger = kindLogger{}

func (k kindLogger) Warn(m string)                         { k.l.Debugf("warning: %s", m) }
func (k kindLogger) Warnf(f string, a ...any)              { k.l.Debugf("warning: "+f, a...) }
func (k kindLogger) Error(m string)                        { k.l.Infof("error: %s", m) }
func (k kindLogger) Errorf(f string, a ...any)             { k.l.Infof("error: "+f, a...) }
func (k kindLogger) V(lv kindlog.Level) kindlog.InfoLogger { return kindInfo{k.l, lv} }

type kindInfo struct {
	l  *logx.Logger
	lv kindlog.Level
}

func (k kindInfo) Info(m string) {
	if k.Enabled() {
		k.l.Debugf("%s", strings.TrimRight(m, "\n"))
	}
}
func (k kindInfo) Infof(f string, a ...any) { k.Info(fmt.Sprintf(f, a...)) }
func (k kindInfo) Enabled() bool            { return k.l.Verbose() && k.lv <= 1 }
