package calico

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/cnimatrix/cnimatrix/internal/apicompat"
	"github.com/cnimatrix/cnimatrix/internal/calicodata"
	"github.com/cnimatrix/cnimatrix/internal/catalog"
	"github.com/cnimatrix/cnimatrix/internal/install"
)

// realFiles loads the upstream Calico data and the catalog.
func realFiles(t *testing.T) (*calicodata.Data, *catalog.Calico) {
	t.Helper()
	root, _ := filepath.Abs("../..")
	d := calicodata.FindForTest(t, root)
	cal, err := catalog.LoadCalico()
	if err != nil {
		t.Fatal(err)
	}
	return d, cal
}

func parseReal(t *testing.T, d *calicodata.Data, tag string, files ...string) []*Object {
	t.Helper()
	var objs []*Object
	for _, f := range files {
		data, err := os.ReadFile(d.ManifestPath(tag, f))
		if err != nil {
			t.Fatal(err)
		}
		o, err := install.ParseManifest(data)
		if err != nil {
			t.Fatalf("%s %s: %v", tag, f, err)
		}
		objs = append(objs, o...)
	}
	return objs
}

// Every real calico.yaml of v3.24.6..v3.32.1: the images it lists are the
// catalog's; each edit a scenario can ask for takes, and reads back; it
// uses no API Kubernetes removed (the catalog declares none for them).
func TestRealCalicoYAMLs(t *testing.T) {
	d, cal := realFiles(t)
	for _, tag := range d.Tags() {
		v, err := cal.Version(tag)
		if err != nil {
			t.Fatal(err)
		}
		objs := parseReal(t, d, tag, "calico.yaml")
		if got, want := strings.Join(Images(objs), " "), strings.Join(v.Images, " "); !sameSet(got, want) {
			t.Errorf("%s images %s, catalog %s", tag, got, want)
		}
		if used := apicompat.Used(objs); apicompat.Diff(used, v.RemovedAPIs) != "" {
			t.Errorf("%s removed APIs %v, catalog %v", tag, used, v.RemovedAPIs)
		}
		if e, err := PoolEncapsulation(objs); err != nil || e != IPIP {
			t.Errorf("%s as shipped: pool encapsulation %q, %v; want IPIP", tag, e, err)
		}
		for _, reg := range []string{"docker.io", "quay.io", "mirror.local:5000/calico-cache"} {
			o := parseReal(t, d, tag, "calico.yaml")
			shipped := strings.HasPrefix(v.Images[0], reg+"/")
			n, err := SetRegistry(o, reg, CalicoImages)
			if err != nil || (n < 3) != shipped {
				t.Errorf("%s registry %s: %d changed, %v", tag, reg, n, err)
				continue
			}
			for _, im := range Images(o) {
				if !strings.HasPrefix(im, reg+"/calico/") {
					t.Errorf("%s registry %s: image %s", tag, reg, im)
				}
			}
		}
		for _, enc := range []Encapsulation{IPIP, VXLAN, VXLANCrossSubnet, None} {
			o := parseReal(t, d, tag, "calico.yaml")
			err := Configure(o, Options{PodCIDR: "10.244.0.0/16", Encapsulation: enc, MTU: 1400})
			if err != nil {
				t.Errorf("%s %s: %v", tag, enc, err)
				continue
			}
			if got, _ := PoolEncapsulation(o); got != enc {
				t.Errorf("%s configured %s reads back %s", tag, enc, got)
			}
			c, _ := nodeContainer(o)
			if e, _ := env(c, "CALICO_IPV4POOL_CIDR"); e == nil || e["value"] != "10.244.0.0/16" {
				t.Errorf("%s: CALICO_IPV4POOL_CIDR %v", tag, e)
			}
			data, _ := configData(o)
			if data["veth_mtu"] != "1400" {
				t.Errorf("%s: veth_mtu %v", tag, data["veth_mtu"])
			}
			if (data["calico_backend"] == "vxlan") != (enc == VXLAN) {
				t.Errorf("%s %s: calico_backend %v", tag, enc, data["calico_backend"])
			}
		}
	}
}

// Every real operator install (tigera-operator.yaml, custom-resources.yaml
// and, from v3.30, the CRDs file): it is recognised, its Installation takes
// the pool CIDR, encapsulation, MTU and registry, and without options the
// pool keeps upstream's VXLANCrossSubnet (D2: the kernel check's
// encapsulation of an operator install).
func TestRealOperatorInstalls(t *testing.T) {
	d, cal := realFiles(t)
	for _, tag := range d.Tags() {
		v, _ := cal.Version(tag)
		var files []string
		for _, f := range v.Operator {
			files = append(files, f.Name())
		}
		objs := parseReal(t, d, tag, files...)
		if !isOperatorInstall(objs) {
			t.Errorf("%s %v: not recognised as an operator install", tag, files)
			continue
		}
		got, err := ConfigureFor(objs, Options{PodCIDR: "10.244.0.0/16", Install: InstallOperator})
		if err != nil {
			t.Fatalf("%s: %v", tag, err)
		}
		if e, err := PoolEncapsulation(got); err != nil || e != VXLANCrossSubnet {
			t.Errorf("%s upstream default: %q, %v; want VXLANCrossSubnet", tag, e, err)
		}
		got, err = ConfigureFor(parseReal(t, d, tag, files...), Options{PodCIDR: "10.244.0.0/16", Install: InstallOperator, Encapsulation: VXLAN, MTU: 1400, Registry: "quay.io"})
		if err != nil {
			t.Fatalf("%s: %v", tag, err)
		}
		inst := installationOf(t, got)
		pool, _ := firstPool(inst)
		mtu, _, _ := unstructured.NestedInt64(inst.Object, "spec", "calicoNetwork", "mtu")
		reg, _, _ := unstructured.NestedString(inst.Object, "spec", "registry")
		if pool["cidr"] != "10.244.0.0/16" || pool["encapsulation"] != "VXLAN" || mtu != 1400 || !strings.HasPrefix(reg, "quay.io") {
			t.Errorf("%s Installation: pool %v mtu %d registry %q", tag, pool, mtu, reg)
		}
	}
}

func sameSet(a, b string) bool {
	as, bs := strings.Fields(a), strings.Fields(b)
	if len(as) != len(bs) {
		return false
	}
	seen := map[string]int{}
	for _, x := range as {
		seen[x]++
	}
	for _, x := range bs {
		seen[x]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}
