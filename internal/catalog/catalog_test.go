package catalog

import "testing"

func TestCatalogLoads(t *testing.T) {
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.DefaultKubernetes() != "v1.37.2" || !c.HasKubernetes("v1.36.3") {
		t.Errorf("kubernetes versions: %v (default %s)", c.KubernetesVersions(), c.DefaultKubernetes())
	}
	f, ok := c.CNI("flannel")
	if !ok {
		t.Fatal("no flannel")
	}
	if _, ok := f.Version("v0.28.10"); !ok {
		t.Errorf("flannel versions %v", f.VersionNames())
	}
}
