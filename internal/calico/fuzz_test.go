package calico

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cnimatrix/cnimatrix/internal/install"
	"github.com/cnimatrix/cnimatrix/internal/repo"
)

// FuzzConfigure feeds the manifest edits manifests and option values they
// were not written for: the Calico-shaped fixtures and the tree's CNI
// fixtures as seeds, with the options a scenario can set. Whatever the
// input, ConfigureFor edits or says why (never a panic), and what it edits
// still lists parseable images.
//
//	go test -fuzz FuzzConfigure -fuzztime 10m ./internal/calico
func FuzzConfigure(f *testing.F) {
	root, err := repo.Root()
	if err != nil {
		f.Fatal(err)
	}
	var seeds []string
	for _, glob := range []string{"internal/calico/testdata/*.yaml", "fixtures/*/*.yaml", "fixtures/cni/*/*.yaml"} {
		paths, _ := filepath.Glob(filepath.Join(root, glob))
		seeds = append(seeds, paths...)
	}
	options := [][5]string{
		{"10.244.0.0/16", "VXLAN", "quay.io", "", ""},
		{"192.168.0.0/16", "IPIP", "mirror.local:5000", "mirror/calico", "operator"},
		{"10.0.0.0/8", "None", "", "", ""},
	}
	for i, p := range seeds {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		o := options[i%len(options)]
		f.Add(data, o[0], o[1], o[2], o[3], o[4], 1440)
	}
	f.Fuzz(func(t *testing.T, manifest []byte, cidr, encap, registry, imagePath, inst string, mtu int) {
		objs, err := install.ParseManifest(manifest)
		if err != nil {
			return
		}
		out, err := ConfigureFor(objs, Options{PodCIDR: cidr, Encapsulation: Encapsulation(encap), MTU: mtu, Registry: registry, ImagePath: imagePath, Install: inst})
		if err != nil {
			return
		}
		for _, img := range Images(out) {
			if _, err := ParseImage(img); err != nil {
				t.Fatalf("edited manifest holds image %q: %v", img, err)
			}
		}
	})
}
