package matrix

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestParseExpectations(t *testing.T) {
	x := mustExp(t, `# known failures
expectations:
  - cni: calico
    cniVersion: "v3.20.*"
    arch: arm64
    outcome: infra-error
    rootCause: arch-mismatch
    reason: upgrade-ipam has no arm64 image
    link: https://github.com/projectcalico/calico/issues/5963
  - cell: flannel-v0.28.10_k8s-v1.37.2_arm64_qemu
    reason: no link given
`)
	if len(x.Entries) != 2 {
		t.Fatalf("%d entries, want 2", len(x.Entries))
	}
	e := x.Entries[0]
	if e.Line != 3 || e.CNI != "calico" || e.CNIVersion != "v3.20.*" || e.Outcome != InfraError || e.RootCause != "arch-mismatch" {
		t.Fatalf("entry 1: %+v", e)
	}
	if x.Entries[1].Outcome != Fail {
		t.Fatalf("default outcome %q, want fail", x.Entries[1].Outcome)
	}
	if len(x.Warnings) != 1 || x.Warnings[0] != "exp.yaml:10: no link: point to the issue that tracks this failure" {
		t.Fatalf("warnings: %q", x.Warnings)
	}
	if !e.Selects(Cell{CNI: "calico", CNIVersion: "v3.20.5", Kubernetes: "v1.24.0", Arch: "arm64", Provider: "qemu"}) ||
		e.Selects(Cell{CNI: "calico", CNIVersion: "v3.21.0", Arch: "arm64"}) {
		t.Fatal("glob selection wrong")
	}
}

func TestExpectationsErrorsNameFileAndLine(t *testing.T) {
	for _, c := range []struct{ name, yml, want string }{
		{"reason missing", "expectations:\n  - cni: calico\n    link: https://example.com/1\n",
			"exp.yaml:2: reason is required"},
		{"reason empty", "expectations:\n  - cni: calico\n    reason:   \n",
			"exp.yaml:3: reason is required"},
		{"alias field", "expectations:\n  - cni: calico\n    k8s: v1.24\n    reason: r\n",
			`exp.yaml:3: unknown field "k8s" (did you mean "kubernetes"?)`},
		{"misspelt field", "expectations:\n  - cni: calico\n    rootcause: x\n    reason: r\n",
			`exp.yaml:3: unknown field "rootcause" (did you mean "rootCause"?)`},
		{"unknown field", "expectations:\n  - cni: calico\n    colour: blue\n    reason: r\n",
			`exp.yaml:3: unknown field "colour" (known: cell, cni, cniVersion, kubernetes, arch, provider, variant, outcome, rootCause, reason, link)`},
		{"bad outcome", "expectations:\n  - cni: calico\n    reason: r\n    outcome: broken\n",
			`exp.yaml:4: outcome "broken": want fail, infra-error, skipped or unknown`},
		{"pass outcome", "expectations:\n  - cni: calico\n    reason: r\n    outcome: pass\n",
			"exp.yaml:4: outcome pass: an expectation records a known failure"},
		{"bad glob", "expectations:\n  - reason: r\n    cniVersion: 'v3.[20'\n",
			`exp.yaml:3: cniVersion "v3.[20": not a valid glob`},
		{"cell and match", "expectations:\n  - reason: r\n    arch: arm64\n    cell: x\n",
			"exp.yaml:4: give either cell or match fields (arch), not both"},
		{"selects nothing", "expectations:\n  - reason: r\n",
			"exp.yaml:2: expectation selects no cell"},
		{"bad link", "expectations:\n  - cni: calico\n    reason: r\n    link: calico#5963\n",
			`exp.yaml:4: link "calico#5963": want an http(s) URL`},
		{"list value", "expectations:\n  - cni: [calico, flannel]\n    reason: r\n",
			"exp.yaml:2: cni: want a single value, not a list"},
		{"duplicate key", "expectations:\n  - cni: calico\n    reason: r\n    cni: flannel\n",
			"exp.yaml:4: cni is already set at line 2"},
		{"entry not mapping", "expectations:\n  - calico\n",
			"exp.yaml:2: expectation: want a mapping"},
		{"syntax", "expectations:\n  - cni: calico\n    reason: r: x\n",
			"exp.yaml:3: mapping values are not allowed in this context"},
		{"top-level list", "- cni: calico\n  reason: r\n",
			"exp.yaml:1: want a mapping with an expectations: list, not a list"},
		{"top-level unknown", "expectation:\n  - cni: calico\n",
			`exp.yaml:1: unknown field "expectation" (known: expectations)`},
		{"second document", "expectations: []\n---\nexpectations: []\n",
			"exp.yaml:2: an expectations file holds one YAML document"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseExpectations("exp.yaml", []byte(c.yml))
			if err == nil {
				t.Fatalf("no error, want %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestExpectationsEmptyAndExampleFile(t *testing.T) {
	for _, yml := range []string{"", "# nothing known\n", "expectations: []\n", "expectations:\n"} {
		if x := mustExp(t, yml); len(x.Entries) != 0 {
			t.Fatalf("%q: %d entries", yml, len(x.Entries))
		}
	}
	// The documented example must stay valid.
	x, err := LoadExpectations(filepath.Join("..", "..", "scenarios", "expectations.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("scenarios/expectations.yaml: %d entries, warnings %q", len(x.Entries), x.Warnings)
}
