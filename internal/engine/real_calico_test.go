package engine

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/calico"
	"github.com/cnimatrix/cnimatrix/internal/calicodata"
	"github.com/cnimatrix/cnimatrix/internal/logx"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

// The preflight audits the images the nodes will pull: for calico.yaml
// installs with cni.calico.registry that is the rewritten registry (D1:
// v3.31+ ship quay.io, a docker.io column must audit docker.io). Over the
// real v3.30.7..v3.32.1 files; the registry the audit asks is closed, so
// every finding is "not audited" and names the image it was for.
func TestPreflightAuditsTheConfiguredRegistry(t *testing.T) {
	root, _ := filepath.Abs("../..")
	d := calicodata.FindForTest(t, root)
	for _, tag := range []string{"v3.30.7", "v3.31.7", "v3.32.1"} {
		for _, reg := range []string{"docker.io", "quay.io"} {
			s := &scenario.Scenario{PodSubnet: "10.244.0.0/16", CNI: scenario.CNISpec{Name: "calico",
				Calico: &calico.Options{PodCIDR: "10.244.0.0/16", Encapsulation: calico.VXLAN, Registry: reg}}}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			rep, _ := auditManifest(ctx, []string{d.ManifestPath(tag, "calico.yaml")}, &s.CNI, nil, "arm64", "127.0.0.1:1", logx.Discard())
			cancel()
			if rep == nil || len(rep.Findings) < 3 {
				t.Fatalf("%s %s: report %+v", tag, reg, rep)
			}
			for _, f := range rep.Findings {
				if !strings.HasPrefix(f.Image, reg+"/calico/") || !strings.HasSuffix(f.Image, ":"+tag) {
					t.Errorf("%s with registry %s: the preflight audits %s", tag, reg, f.Image)
				}
			}
		}
	}
}

// The kernel check and the Calico checks take the tunnel from the manifest
// the cell applies (D2): calico.yaml as shipped is IPIP, with the VXLAN
// option VXLAN; an operator install without the option uses its
// custom-resources.yaml's pool, VXLANCrossSubnet, not IPIP.
func TestEncapsulationOfRealInstalls(t *testing.T) {
	root, _ := filepath.Abs("../..")
	d := calicodata.FindForTest(t, root)
	tag := "v3.32.1"
	calicoYAML := d.ManifestPath(tag, "calico.yaml")
	plain := &scenario.Scenario{PodSubnet: "10.244.0.0/16", CNI: scenario.CNISpec{Name: "calico"}}
	if got := manifestEncapsulation(t, plain, calicoYAML); got != "IPIP" {
		t.Errorf("calico.yaml as shipped: %s", got)
	}
	vx := &scenario.Scenario{PodSubnet: "10.244.0.0/16", CNI: scenario.CNISpec{Name: "calico",
		Calico: &calico.Options{PodCIDR: "10.244.0.0/16", Encapsulation: calico.VXLAN}}}
	if got := manifestEncapsulation(t, vx, calicoYAML); got != "VXLAN" {
		t.Errorf("calico.yaml with VXLAN: %s", got)
	}
	op := joinedOperatorFiles(t, d, tag)
	opS := &scenario.Scenario{PodSubnet: "10.244.0.0/16", CNI: scenario.CNISpec{Name: "calico",
		Calico: &calico.Options{PodCIDR: "10.244.0.0/16", Install: calico.InstallOperator}}}
	if got := manifestEncapsulation(t, opS, op); got != "VXLANCrossSubnet" {
		t.Errorf("operator install without encapsulation: %s, want the Installation's VXLANCrossSubnet", got)
	}
}

// manifestEncapsulation is the plan's encapsulation of the manifest at path
// as s configures it.
func manifestEncapsulation(t *testing.T, s *scenario.Scenario, path string) string {
	t.Helper()
	objs, _, err := configuredManifest(path, &s.CNI)
	if err != nil {
		t.Fatal(err)
	}
	return encapsulation(&s.CNI, objs)
}
