package kind

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/yaml"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
)

func testSpec() cluster.Spec {
	return cluster.Spec{
		Name:              "cnimatrix-unit",
		KubernetesVersion: "v1.37.2",
		Nodes:             []cluster.NodeSpec{{Role: cluster.ControlPlane}, {Role: cluster.Worker, Arch: runtime.GOARCH}},
		NodeImage:         "cnimatrix/kind-node:v1.37.2-test",
		PodSubnet:         "10.244.0.0/16",
		ServiceSubnet:     "10.96.0.0/16",
	}
}

// roundTrip encodes the config as kind would read it from a file and
// decodes it again, so a config that only works as a Go value fails here.
func roundTrip(t *testing.T, cfg *v1alpha4.Cluster) *v1alpha4.Cluster {
	t.Helper()
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	var back v1alpha4.Cluster
	if err := yaml.UnmarshalStrict(raw, &back); err != nil {
		t.Fatalf("config YAML does not decode strictly: %v\n%s", err, raw)
	}
	return &back
}

func TestBuildConfigHostFacts(t *testing.T) {
	for _, tc := range []struct {
		name          string
		facts         HostFacts
		wantKubelet   bool
		wantContainer bool
	}{
		{"cgroup v2 with all caps", HostFacts{}, false, false},
		{"cgroup v1", HostFacts{CgroupV1: true}, true, false},
		{"no CAP_SYS_RESOURCE", HostFacts{NoSysResource: true}, false, true},
		{"both", HostFacts{CgroupV1: true, NoSysResource: true}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := buildConfig(testSpec(), tc.facts, "")
			if err != nil {
				t.Fatal(err)
			}
			cfg = roundTrip(t, cfg)
			if got := len(cfg.KubeadmConfigPatches) > 0; got != tc.wantKubelet {
				t.Errorf("kubelet patch present = %v, want %v", got, tc.wantKubelet)
			}
			if got := len(cfg.ContainerdConfigPatches) > 0; got != tc.wantContainer {
				t.Errorf("containerd patch present = %v, want %v", got, tc.wantContainer)
			}
			for _, p := range cfg.KubeadmConfigPatches {
				var doc map[string]any
				if err := yaml.Unmarshal([]byte(p), &doc); err != nil {
					t.Fatalf("kubeadm patch is not YAML: %v", err)
				}
				if doc["kind"] != "KubeletConfiguration" || doc["failCgroupV1"] != false {
					t.Errorf("kubeadm patch = %v, want KubeletConfiguration with failCgroupV1: false", doc)
				}
			}
			for _, p := range cfg.ContainerdConfigPatches {
				version, plugins := decodePatch(t, p)
				section := map[int64]string{2: "io.containerd.grpc.v1.cri", 3: "io.containerd.cri.v1.runtime", 4: "io.containerd.cri.v1.runtime"}[version]
				cri, _ := plugins[section].(map[string]any)
				if cri["restrict_oom_score_adj"] != true {
					t.Errorf("patch for version %v lacks %s.restrict_oom_score_adj = true:\n%s", version, section, p)
				}
			}
		})
	}
}

func TestBuildConfigNetworkingAndNodes(t *testing.T) {
	dir := t.TempDir()
	cfg, err := buildConfig(testSpec(), HostFacts{}, dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg = roundTrip(t, cfg)
	n := cfg.Networking
	if !n.DisableDefaultCNI || n.KubeProxyMode != v1alpha4.IPTablesProxyMode || n.PodSubnet != "10.244.0.0/16" || n.ServiceSubnet != "10.96.0.0/16" {
		t.Errorf("networking = %+v", n)
	}
	if len(cfg.Nodes) != 2 || cfg.Nodes[0].Role != v1alpha4.ControlPlaneRole || cfg.Nodes[1].Role != v1alpha4.WorkerRole {
		t.Fatalf("nodes = %+v", cfg.Nodes)
	}
	for _, node := range cfg.Nodes {
		if node.Image != "cnimatrix/kind-node:v1.37.2-test" {
			t.Errorf("node image = %q", node.Image)
		}
		if len(node.ExtraMounts) != 1 {
			t.Fatalf("mounts = %+v", node.ExtraMounts)
		}
		m := node.ExtraMounts[0]
		if m.HostPath != dir || m.ContainerPath != "/etc/containerd/certs.d" || !m.Readonly {
			t.Errorf("mount = %+v", m)
		}
	}
	// Without a mirror there is nothing to mount.
	cfg, err = buildConfig(testSpec(), HostFacts{}, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Nodes[0].ExtraMounts) != 0 {
		t.Errorf("mounts without mirror = %+v", cfg.Nodes[0].ExtraMounts)
	}
}

func TestValidateSpec(t *testing.T) {
	other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[runtime.GOARCH]
	for _, tc := range []struct {
		name   string
		mutate func(*cluster.Spec)
		want   string
	}{
		{"bad prefix", func(s *cluster.Spec) { s.Name = "foo" }, "must start with"},
		{"no image", func(s *cluster.Spec) { s.NodeImage = "" }, "no node image"},
		{"no nodes", func(s *cluster.Spec) { s.Nodes = nil }, "no nodes"},
		{"foreign arch", func(s *cluster.Spec) { s.Nodes[1].Arch = other }, "qemu provider"},
		{"two control planes", func(s *cluster.Spec) { s.Nodes[1].Role = cluster.ControlPlane }, "exactly one control-plane"},
		{"no control plane", func(s *cluster.Spec) { s.Nodes[0].Role = cluster.Worker }, "exactly one control-plane"},
		{"bad role", func(s *cluster.Spec) { s.Nodes[1].Role = "boss" }, "unknown role"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testSpec()
			tc.mutate(&s)
			err := validateSpec(s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	if err := validateSpec(testSpec()); err != nil {
		t.Errorf("valid spec rejected: %v", err)
	}
}

func TestCapBnd(t *testing.T) {
	status := "Name:\tx\nCapInh:\t0000000000000000\nCapBnd:\t000001fffeffffff\nCapAmb:\t0\n"
	bnd, err := capBnd(status)
	if err != nil {
		t.Fatal(err)
	}
	if bnd&(1<<capSysResource) != 0 {
		t.Errorf("CAP_SYS_RESOURCE reported present in %x", bnd)
	}
	bnd, _ = capBnd("CapBnd:\t000001ffffffffff\n")
	if bnd&(1<<capSysResource) == 0 {
		t.Errorf("CAP_SYS_RESOURCE reported missing in %x", bnd)
	}
	if _, err := capBnd("Name: x\n"); err == nil {
		t.Error("missing CapBnd line not reported")
	}
}

func TestWriteMirrorHosts(t *testing.T) {
	dir := t.TempDir()
	m := &cluster.Mirror{Endpoint: "http://172.18.0.1:41234/", Upstreams: []string{"docker.io", "registry.k8s.io"}}
	if err := writeMirrorHosts(dir, m); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "docker.io", "hosts.toml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Server       string `toml:"server"`
		OverridePath bool   `toml:"override_path"`
	}
	if _, err := toml.Decode(string(raw), &doc); err != nil {
		t.Fatalf("hosts.toml: %v\n%s", err, raw)
	}
	if !strings.HasPrefix(doc.Server, "http://172.18.0.1:41234/v2/") || !doc.OverridePath {
		t.Errorf("hosts.toml = %+v\n%s", doc, raw)
	}
	if _, err := os.Stat(filepath.Join(dir, "registry.k8s.io", "hosts.toml")); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"https://172.18.0.1:5000", "172.18.0.1:5000", "http://h:1/x"} {
		if err := writeMirrorHosts(t.TempDir(), &cluster.Mirror{Endpoint: bad, Upstreams: []string{"quay.io"}}); err == nil {
			t.Errorf("endpoint %q accepted", bad)
		}
	}
}

// A node image not built here (kind's kindest/node) is told where the
// registry hosts are; one of ours says so in its own containerd config.
func TestBuildConfigRegistryPathForUpstreamNodeImages(t *testing.T) {
	certs := t.TempDir()
	for _, tc := range []struct {
		image string
		want  bool
	}{
		{"cnimatrix/kind-node:v1.37.2-test", false},
		{"docker.io/kindest/node:v1.37.2", true},
	} {
		spec := testSpec()
		spec.NodeImage = tc.image
		cfg, err := buildConfig(spec, HostFacts{}, certs)
		if err != nil {
			t.Fatal(err)
		}
		cfg = roundTrip(t, cfg)
		versions := map[int64]bool{}
		for _, p := range cfg.ContainerdConfigPatches {
			version, plugins := decodePatch(t, p)
			section := map[int64]string{2: "io.containerd.grpc.v1.cri", 3: "io.containerd.cri.v1.images", 4: "io.containerd.cri.v1.images"}[version]
			sec, _ := plugins[section].(map[string]any)
			reg, _ := sec["registry"].(map[string]any)
			if reg["config_path"] != registryCertsPath {
				t.Errorf("%s: patch for version %v lacks %s.registry.config_path:\n%s", tc.image, version, section, p)
			}
			versions[version] = true
		}
		if got := len(versions) == 3; got != tc.want {
			t.Errorf("%s: registry config_path patches for versions %v, want all three: %v", tc.image, versions, tc.want)
		}
	}
}

// decodePatch reads a containerd config patch: its version and its plugins
// table.
func decodePatch(t *testing.T, p string) (int64, map[string]any) {
	t.Helper()
	var doc map[string]any
	if _, err := toml.Decode(p, &doc); err != nil {
		t.Fatalf("containerd patch is not TOML: %v\n%s", err, p)
	}
	version, _ := doc["version"].(int64)
	plugins, _ := doc["plugins"].(map[string]any)
	return version, plugins
}
