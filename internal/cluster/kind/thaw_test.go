package kind

import (
	"os"
	"path/filepath"
	"testing"
)

func TestThawTreeThawsOnlyFrozenCgroups(t *testing.T) {
	root := t.TempDir()
	states := map[string]string{
		"freezer.state":                         "THAWED\n",
		"kubelet.slice/pod-a/freezer.state":     "FROZEN\n",
		"kubelet.slice/pod-b/freezer.state":     "THAWED\n",
		"kubelet.slice/pod-c/ctr/freezer.state": "FREEZING\n",
		"kubelet.slice/pod-c/ctr/cgroup.procs":  "123\n",
	}
	for p, v := range states {
		f := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	n, err := thawTree(root)
	if err != nil || n != 2 {
		t.Fatalf("thawTree = %d, %v; want 2 thawed", n, err)
	}
	for p := range states {
		if filepath.Base(p) != "freezer.state" {
			continue
		}
		b, _ := os.ReadFile(filepath.Join(root, p))
		if s := string(b); s != "THAWED" && s != "THAWED\n" {
			t.Errorf("%s: %q", p, s)
		}
	}
	if n, err := thawTree(filepath.Join(root, "gone")); n != 0 || err != nil {
		t.Errorf("missing tree: %d, %v", n, err)
	}
}
