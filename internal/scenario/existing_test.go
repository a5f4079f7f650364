package scenario

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestExistingBlock(t *testing.T) {
	base := "name: x\ncni:\n  name: flannel\n  versions: [v0.28.10]\n"
	s, err := load(t, base+"provider: existing\nexisting:\n  kubeconfig: kc\n  context: prod\n")
	if err != nil {
		t.Fatal(err)
	}
	if s.Existing == nil || s.Existing.Mode != ExistingInstalled || s.Existing.Context != "prod" || !filepath.IsAbs(s.Existing.Kubeconfig) || filepath.Base(s.Existing.Kubeconfig) != "kc" {
		t.Errorf("existing = %+v, want installed mode, context prod, kubeconfig resolved beside the scenario", s.Existing)
	}
	for _, c := range s.Cells() {
		if c.Provider != ProviderExisting {
			t.Errorf("cell %s: provider %s", c.ID(), c.Provider)
		}
	}
	// The kubeconfig may come from the command line instead.
	s, err = load(t, base+"provider: existing\n")
	if err != nil {
		t.Fatal(err)
	}
	s.UseExisting("/k", "c", ExistingInstall, true)
	if *s.Existing != (Existing{Kubeconfig: "/k", Context: "c", Mode: ExistingInstall, ReplaceCNI: true}) {
		t.Errorf("UseExisting: %+v", s.Existing)
	}
	bad := map[string]string{
		"bad mode":          base + "provider: existing\nexisting:\n  kubeconfig: kc\n  mode: upgrade\n",
		"block without it":  base + "provider: kind\nexisting:\n  kubeconfig: kc\n",
		"reuse on existing": base + "provider: existing\nreuseClusters: true\nexisting:\n  kubeconfig: kc\n",
	}
	want := map[string]string{
		"bad mode":          `s.yaml:8: existing.mode "upgrade": want installed`,
		"block without it":  `s.yaml:7: existing: only with provider existing, not "kind"`,
		"reuse on existing": "s.yaml:6: reuseClusters: not with provider existing",
	}
	for name, body := range bad {
		_, err := load(t, body)
		if err == nil || !strings.Contains(err.Error(), want[name]) {
			t.Errorf("%s: %v, want %q", name, err, want[name])
		}
	}
}
