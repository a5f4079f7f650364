package calico

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/cnimatrix/cnimatrix/internal/install"
)

func load(t *testing.T, name string) []*Object {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := install.ParseManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// nodeEnv is calico-node's env as name -> value ("<from>" for valueFrom).
func nodeEnv(t *testing.T, objs []*Object) map[string]string {
	t.Helper()
	c, err := nodeContainer(objs)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range c["env"].([]any) {
		em := e.(map[string]any)
		name := em["name"].(string)
		if _, dup := out[name]; dup {
			t.Errorf("env %s appears twice", name)
		}
		if v, ok := em["value"].(string); ok {
			out[name] = v
		} else {
			out[name] = "<from>"
		}
	}
	return out
}

func probe(t *testing.T, objs []*Object, which string) []string {
	t.Helper()
	c, _ := nodeContainer(objs)
	cmd, _, _ := unstructured.NestedStringSlice(c, which, "exec", "command")
	return cmd
}

func config(t *testing.T, objs []*Object) map[string]any {
	t.Helper()
	d, err := configData(objs)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// reparse writes the objects back to YAML and parses them again, as the
// installer will: edits must leave objects the parser accepts.
func reparse(t *testing.T, objs []*Object) []*Object {
	t.Helper()
	var b strings.Builder
	for _, o := range objs {
		y, err := yaml.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	out, err := install.ParseManifest([]byte(b.String()))
	if err != nil {
		t.Fatalf("edited manifest does not parse: %v", err)
	}
	return out
}

func TestImagesListsContainersAndInitContainers(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"calico-v3.28-shaped.yaml", []string{"docker.io/calico/cni:v3.28.5", "docker.io/calico/node:v3.28.5", "docker.io/calico/kube-controllers:v3.28.5"}},
		{"calico-v3.16-shaped.yaml", []string{"calico/cni:v3.16.10", "calico/pod2daemon-flexvol:v3.16.10", "calico/node:v3.16.10", "calico/kube-controllers:v3.16.10"}},
		{"calico-v3.2-shaped.yaml", []string{"quay.io/calico/node:v3.2.8", "quay.io/calico/cni:v3.2.8", "quay.io/calico/kube-controllers:v3.2.8"}},
	} {
		if got := Images(load(t, tc.file)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: images\n got %v\nwant %v", tc.file, got, tc.want)
		}
	}
}

func TestParseImage(t *testing.T) {
	for in, want := range map[string]ImageRef{
		"calico/node:v3.28.0":                   {"docker.io", "calico/node", ":v3.28.0"},
		"docker.io/calico/node:v3.28.0":         {"docker.io", "calico/node", ":v3.28.0"},
		"index.docker.io/calico/node":           {"docker.io", "calico/node", ""},
		"quay.io/calico/cni:v3.2.8":             {"quay.io", "calico/cni", ":v3.2.8"},
		"mirror.local:5000/calico/node:v3.28.0": {"mirror.local:5000", "calico/node", ":v3.28.0"},
		"localhost/calico/node:v1":              {"localhost", "calico/node", ":v1"},
		"nginx":                                 {"docker.io", "library/nginx", ""},
		"calico/node:v3.28.0@sha256:abcd":       {"docker.io", "calico/node", ":v3.28.0@sha256:abcd"},
		"quay.io/calico/node@sha256:abcd":       {"quay.io", "calico/node", "@sha256:abcd"},
	} {
		got, err := ParseImage(in)
		if err != nil || got != want {
			t.Errorf("ParseImage(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "calico/node v3", "quay.io/"} {
		if _, err := ParseImage(bad); err == nil {
			t.Errorf("ParseImage(%q): want an error", bad)
		}
	}
}

func TestSetRegistry(t *testing.T) {
	objs := load(t, "calico-v3.16-shaped.yaml")
	n, err := SetRegistry(objs, "quay.io", CalicoImages)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"quay.io/calico/cni:v3.16.10", "quay.io/calico/pod2daemon-flexvol:v3.16.10", "quay.io/calico/node:v3.16.10", "quay.io/calico/kube-controllers:v3.16.10"}
	if got := Images(objs); !reflect.DeepEqual(got, want) {
		t.Errorf("docker.io -> quay.io: %v", got)
	}
	if n != 5 { // cni is used twice (upgrade-ipam, install-cni)
		t.Errorf("changed %d container entries, want 5", n)
	}

	// quay.io -> docker.io, and a mirror with a path prefix.
	objs = load(t, "calico-v3.2-shaped.yaml")
	if _, err := SetRegistry(objs, "docker.io", CalicoImages); err != nil {
		t.Fatal(err)
	}
	if got := Images(objs)[0]; got != "docker.io/calico/node:v3.2.8" {
		t.Errorf("quay.io -> docker.io: %s", got)
	}
	if _, err := SetRegistry(objs, "mirror.local:5000/proxy/", CalicoImages); err != nil {
		t.Fatal(err)
	}
	if got := Images(objs)[1]; got != "mirror.local:5000/proxy/calico/cni:v3.2.8" {
		t.Errorf("mirror: %s", got)
	}
	// Unchanged images are not counted.
	if n, _ := SetRegistry(objs, "mirror.local:5000/proxy", CalicoImages); n != 0 {
		t.Errorf("second identical override changed %d entries", n)
	}
}

func TestSetRegistryScope(t *testing.T) {
	etcd := &Object{Object: map[string]any{"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": map[string]any{"name": "calico-etcd"},
		"spec": map[string]any{"template": map[string]any{"spec": map[string]any{"containers": []any{
			map[string]any{"name": "calico-etcd", "image": "quay.io/coreos/etcd:v3.3.9"}}}}}}}
	objs := append(load(t, "calico-v3.2-shaped.yaml"), etcd)
	if _, err := SetRegistry(objs, "docker.io", CalicoImages); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(Images(objs), "quay.io/coreos/etcd:v3.3.9") {
		t.Errorf("CalicoImages moved a non-Calico image: %v", Images(objs))
	}
	if _, err := SetRegistry(objs, "mirror.local:5000", AllImages); err != nil {
		t.Fatal(err)
	}
	for _, img := range Images(objs) {
		if !strings.HasPrefix(img, "mirror.local:5000/") {
			t.Errorf("AllImages left %s", img)
		}
	}
	for _, bad := range []string{"", "https://quay.io", "quay .io"} {
		if _, err := SetRegistry(objs, bad, AllImages); err == nil {
			t.Errorf("registry %q: want an error", bad)
		}
	}
}

func TestSetPodCIDR(t *testing.T) {
	// v3.28 ships it commented out: it must be added, once.
	objs := load(t, "calico-v3.28-shaped.yaml")
	if _, ok := nodeEnv(t, objs)["CALICO_IPV4POOL_CIDR"]; ok {
		t.Fatal("fixture should have CALICO_IPV4POOL_CIDR commented out")
	}
	if err := SetPodCIDR(objs, "10.244.0.0/16"); err != nil {
		t.Fatal(err)
	}
	objs = reparse(t, objs)
	if got := nodeEnv(t, objs)["CALICO_IPV4POOL_CIDR"]; got != "10.244.0.0/16" {
		t.Errorf("added CIDR %q", got)
	}
	// v3.2 hard-codes 192.168.0.0/16: it must be replaced, not duplicated.
	objs = load(t, "calico-v3.2-shaped.yaml")
	if err := SetPodCIDR(objs, "10.244.0.0/16"); err != nil {
		t.Fatal(err)
	}
	if got := nodeEnv(t, objs)["CALICO_IPV4POOL_CIDR"]; got != "10.244.0.0/16" {
		t.Errorf("replaced CIDR %q", got)
	}
	for _, bad := range []string{"", "10.244.0.0", "fd00::/64", "10.244.1.0/16", "300.1.0.0/16"} {
		if err := SetPodCIDR(objs, bad); err == nil {
			t.Errorf("CIDR %q: want an error", bad)
		}
	}
	if err := SetPodCIDR(load(t, "calico-v3.28-shaped.yaml")[:2], "10.244.0.0/16"); err == nil || !strings.Contains(err.Error(), "no DaemonSet calico-node") {
		t.Errorf("manifest without calico-node: %v", err)
	}
}

func TestSetEncapsulationVXLAN(t *testing.T) {
	objs := load(t, "calico-v3.28-shaped.yaml")
	if err := SetEncapsulation(objs, VXLAN); err != nil {
		t.Fatal(err)
	}
	objs = reparse(t, objs)
	env := nodeEnv(t, objs)
	if env["CALICO_IPV4POOL_IPIP"] != "Never" || env["CALICO_IPV4POOL_VXLAN"] != "Always" {
		t.Errorf("pool modes: ipip %s vxlan %s", env["CALICO_IPV4POOL_IPIP"], env["CALICO_IPV4POOL_VXLAN"])
	}
	if env["CALICO_IPV6POOL_VXLAN"] != "Never" {
		t.Errorf("IPv6 pool touched: %s", env["CALICO_IPV6POOL_VXLAN"])
	}
	if got := config(t, objs)["calico_backend"]; got != "vxlan" {
		t.Errorf("calico_backend %v", got)
	}
	if got := probe(t, objs, "livenessProbe"); !reflect.DeepEqual(got, []string{"/bin/calico-node", "-felix-live"}) {
		t.Errorf("liveness %v", got)
	}
	if got := probe(t, objs, "readinessProbe"); !reflect.DeepEqual(got, []string{"/bin/calico-node", "-felix-ready"}) {
		t.Errorf("readiness %v", got)
	}
	// Back to IPIP needs BIRD, which a VXLAN-only manifest no longer runs.
	if err := SetEncapsulation(objs, IPIP); err == nil || !strings.Contains(err.Error(), "calico_backend") {
		t.Errorf("IPIP on a VXLAN-only manifest: %v", err)
	}
}

func TestSetEncapsulationCrossSubnetAndNone(t *testing.T) {
	objs := load(t, "calico-v3.16-shaped.yaml")
	if err := SetEncapsulation(objs, VXLANCrossSubnet); err != nil {
		t.Fatal(err)
	}
	env := nodeEnv(t, objs)
	if env["CALICO_IPV4POOL_IPIP"] != "Never" || env["CALICO_IPV4POOL_VXLAN"] != "CrossSubnet" {
		t.Errorf("pool modes: %v", env)
	}
	if got := config(t, objs)["calico_backend"]; got != "bird" {
		t.Errorf("CrossSubnet must keep BIRD, calico_backend %v", got)
	}
	if got := probe(t, objs, "readinessProbe"); !slices.Contains(got, "-bird-ready") {
		t.Errorf("CrossSubnet must keep the BIRD readiness check: %v", got)
	}
	if err := SetEncapsulation(objs, None); err != nil {
		t.Fatal(err)
	}
	if env := nodeEnv(t, objs); env["CALICO_IPV4POOL_IPIP"] != "Never" || env["CALICO_IPV4POOL_VXLAN"] != "Never" {
		t.Errorf("None: %v", env)
	}
	if err := SetEncapsulation(objs, IPIP); err != nil {
		t.Fatal(err)
	}
	if env := nodeEnv(t, objs); env["CALICO_IPV4POOL_IPIP"] != "Always" || env["CALICO_IPV4POOL_VXLAN"] != "Never" {
		t.Errorf("IPIP: %v", env)
	}
}

func TestSetEncapsulationOldManifest(t *testing.T) {
	for _, e := range []Encapsulation{VXLAN, VXLANCrossSubnet} {
		objs := load(t, "calico-v3.2-shaped.yaml")
		err := SetEncapsulation(objs, e)
		if err == nil || !strings.Contains(err.Error(), "cannot take VXLAN") || !strings.Contains(err.Error(), "CALICO_IPV4POOL_VXLAN") {
			t.Errorf("%s on v3.2: %v", e, err)
		}
		if _, ok := nodeEnv(t, objs)["CALICO_IPV4POOL_VXLAN"]; ok {
			t.Errorf("%s on v3.2: a refused edit changed the manifest", e)
		}
	}
	// None and IPIP only need the IPIP variable, which v3.2 has.
	objs := load(t, "calico-v3.2-shaped.yaml")
	if err := SetEncapsulation(objs, None); err != nil {
		t.Fatal(err)
	}
	env := nodeEnv(t, objs)
	if env["CALICO_IPV4POOL_IPIP"] != "Never" {
		t.Errorf("None on v3.2: %v", env)
	}
	if _, ok := env["CALICO_IPV4POOL_VXLAN"]; ok {
		t.Error("None on v3.2 added CALICO_IPV4POOL_VXLAN, which its calico-node does not know")
	}
	if err := SetEncapsulation(objs, "Geneve"); err == nil {
		t.Error("unknown encapsulation accepted")
	}
	if _, err := ParseEncapsulation("vxlan"); err == nil || !strings.Contains(err.Error(), "VXLANCrossSubnet") {
		t.Errorf("ParseEncapsulation is case-sensitive and lists the choices: %v", err)
	}
}

func TestSetMTU(t *testing.T) {
	objs := load(t, "calico-v3.16-shaped.yaml")
	if err := SetMTU(objs, 1400); err != nil {
		t.Fatal(err)
	}
	objs = reparse(t, objs)
	if got := config(t, objs)["veth_mtu"]; got != "1400" {
		t.Errorf("veth_mtu %v", got)
	}
	if err := SetMTU(objs, 0); err == nil || !strings.Contains(err.Error(), "v3.19") {
		t.Errorf("auto MTU on a pre-v3.19 manifest: %v", err)
	}
	if err := SetMTU(load(t, "calico-v3.28-shaped.yaml"), 0); err != nil {
		t.Errorf("auto MTU on v3.28: %v", err)
	}
	if err := SetMTU(load(t, "calico-v3.2-shaped.yaml"), 1400); err == nil || !strings.Contains(err.Error(), "veth_mtu") {
		t.Errorf("v3.2 has no veth_mtu: %v", err)
	}
	for _, bad := range []int{-1, 100, 65536} {
		if err := SetMTU(objs, bad); err == nil {
			t.Errorf("MTU %d: want an error", bad)
		}
	}
}

func TestInstallation(t *testing.T) {
	u, err := Installation(InstallationOptions{CIDR: "10.244.0.0/16", Encapsulation: VXLANCrossSubnet, MTU: 1450, Registry: "mirror.local:5000"})
	if err != nil {
		t.Fatal(err)
	}
	if u.GetAPIVersion() != "operator.tigera.io/v1" || u.GetKind() != "Installation" || u.GetName() != "default" {
		t.Errorf("identity: %s %s %s", u.GetAPIVersion(), u.GetKind(), u.GetName())
	}
	pools, _, _ := unstructured.NestedSlice(u.Object, "spec", "calicoNetwork", "ipPools")
	if len(pools) != 1 {
		t.Fatalf("pools %v", pools)
	}
	p := pools[0].(map[string]any)
	if p["cidr"] != "10.244.0.0/16" || p["encapsulation"] != "VXLANCrossSubnet" || p["blockSize"] != int64(26) {
		t.Errorf("pool %v", p)
	}
	if mtu, _, _ := unstructured.NestedInt64(u.Object, "spec", "calicoNetwork", "mtu"); mtu != 1450 {
		t.Errorf("mtu %d", mtu)
	}
	if r, _, _ := unstructured.NestedString(u.Object, "spec", "registry"); r != "mirror.local:5000/" {
		t.Errorf("registry %q", r)
	}
	// It must survive the manifest parser (what the installer will feed it).
	if _, err := install.ParseManifest(mustYAML(t, u)); err != nil {
		t.Errorf("rendered Installation does not parse: %v", err)
	}

	u, err = Installation(InstallationOptions{CIDR: "192.168.0.0/16", Encapsulation: IPIP})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", "registry"); ok {
		t.Error("no registry asked for, yet one was set")
	}
	if _, ok, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", "calicoNetwork", "mtu"); ok {
		t.Error("MTU 0 must leave the operator to detect it")
	}
	for _, o := range []InstallationOptions{
		{CIDR: "", Encapsulation: IPIP},
		{CIDR: "10.244.0.1/16", Encapsulation: IPIP},
		{CIDR: "10.244.0.0/16", Encapsulation: "ipip"},
		{CIDR: "10.244.0.0/16", Encapsulation: IPIP, MTU: 20},
		{CIDR: "10.244.0.0/24", Encapsulation: IPIP, BlockSize: 20},
		{CIDR: "10.244.0.0/16", Encapsulation: IPIP, Registry: "https://quay.io"},
	} {
		if _, err := Installation(o); err == nil {
			t.Errorf("%+v: want an error", o)
		}
	}
}

func mustYAML(t *testing.T, u *Object) []byte {
	t.Helper()
	y, err := yaml.Marshal(u.Object)
	if err != nil {
		t.Fatal(err)
	}
	return y
}

func TestConfigureAllOrSaysWhy(t *testing.T) {
	objs := load(t, "calico-v3.28-shaped.yaml")
	if err := Configure(objs, Options{PodCIDR: "10.244.0.0/16", Encapsulation: VXLAN, MTU: 1400, Registry: "quay.io"}); err != nil {
		t.Fatal(err)
	}
	for _, img := range Images(objs) {
		if !strings.HasPrefix(img, "quay.io/calico/") {
			t.Errorf("image %s not moved to quay.io", img)
		}
	}
	old := load(t, "calico-v3.2-shaped.yaml")
	if err := Configure(old, Options{PodCIDR: "10.244.0.0/16", Encapsulation: VXLAN}); err == nil {
		t.Error("v3.2 took VXLAN")
	}
}

// A registry is a host (a dot, a port or localhost), else the runtime reads
// it as docker.io's; a registry ending in calico/ would double it, which is
// what imagePath is for (the operator's own split of registry and path).
func TestCheckRegistry(t *testing.T) {
	for reg, want := range map[string]string{
		"quay.io":                  "",
		"mirror.local:5000/proxy/": "",
		"localhost/x":              "",
		"myregistry":               `"myregistry" is not a host name`,
		"myregistry/calico":        `"myregistry" is not a host name`,
		"mirror.local:5000/calico": `ends in "calico"`,
		"https://quay.io":          "want a host",
	} {
		_, err := CheckRegistry(reg)
		if (err == nil) != (want == "") || err != nil && !strings.Contains(err.Error(), want) {
			t.Errorf("CheckRegistry(%q) = %v, want %q", reg, err, want)
		}
	}
}

func TestSetImagePath(t *testing.T) {
	objs := load(t, "calico-v3.16-shaped.yaml")
	err := Configure(objs, Options{Registry: "mirror.local:5000", ImagePath: "/mirror/calico/"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"mirror.local:5000/mirror/calico/cni:v3.16.10", "mirror.local:5000/mirror/calico/pod2daemon-flexvol:v3.16.10", "mirror.local:5000/mirror/calico/node:v3.16.10", "mirror.local:5000/mirror/calico/kube-controllers:v3.16.10"}
	if got := Images(objs); !reflect.DeepEqual(got, want) {
		t.Errorf("registry + imagePath: %v", got)
	}
	if _, err := SetImagePath(objs, "Mirror"); err == nil {
		t.Error("upper-case image path accepted")
	}
	u, err := Installation(InstallationOptions{CIDR: "10.244.0.0/16", Encapsulation: VXLAN, Registry: "mirror.local:5000", ImagePath: "mirror/calico"})
	if err != nil {
		t.Fatal(err)
	}
	if p, _, _ := unstructured.NestedString(u.Object, "spec", "imagePath"); p != "mirror/calico" {
		t.Errorf("Installation spec.imagePath = %q", p)
	}
	imgs, err := OperatorImages("v3.32.1", []*Object{u})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(imgs[0], "mirror.local:5000/mirror/calico/") {
		t.Errorf("operator images under the image path: %v", imgs)
	}
}
