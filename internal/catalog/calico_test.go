package catalog

import (
	"strconv"
	"strings"
	"testing"
)

func TestCalicoCatalogLoads(t *testing.T) {
	c, err := LoadCalico()
	if err != nil {
		t.Fatal(err)
	}
	// The range the issue asks for: every minor from v3.15 to v3.32, plus
	// the seed era.
	want := []string{"v3.1.7", "v3.2.8", "v3.8.9"}
	for m := 15; m <= 32; m++ {
		found := ""
		for _, v := range c.Versions {
			if strings.HasPrefix(v.Version, "v3."+strconv.Itoa(m)+".") {
				found = v.Version
			}
		}
		if found == "" {
			t.Errorf("no v3.%d release in the catalog", m)
		}
		want = append(want, found)
	}
	if got := c.VersionNames(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("versions\n got %v\nwant %v", got, want)
	}

	v, err := c.Version("v3.32.1")
	if err != nil {
		t.Fatal(err)
	}
	if v.Manifests[0].URL != "https://raw.githubusercontent.com/projectcalico/calico/v3.32.1/manifests/calico.yaml" {
		t.Errorf("v3.32.1 manifest %s", v.Manifests[0].URL)
	}
	if v.KubernetesRange() != "v1.34-v1.36" || !v.SupportsKubernetes("v1.36.3") || v.SupportsKubernetes("v1.37.2") {
		t.Errorf("v3.32.1 kubernetes %v", v.Kubernetes)
	}
	if len(v.Files()) != 4 || v.Files()[0] != &v.Manifests[0] {
		t.Errorf("v3.32.1 files %v", v.Files())
	}
	// Old versions live on the docs hosts, not in git.
	old, _ := c.Version("v3.20.6")
	if !strings.HasPrefix(old.Manifests[0].URL, "https://docs.tigera.io/") {
		t.Errorf("v3.20.6 manifest %s", old.Manifests[0].URL)
	}
	if seed, _ := c.Version("v3.2.8"); len(seed.Manifests) != 3 || len(seed.Operator) != 0 {
		t.Errorf("v3.2.8: %d manifests, %d operator files", len(seed.Manifests), len(seed.Operator))
	}
}

func TestCalicoUnknownVersionListsKnown(t *testing.T) {
	c, err := LoadCalico()
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Version("v3.99.0")
	if err == nil || !strings.Contains(err.Error(), "v3.99.0") || !strings.Contains(err.Error(), "v3.32.1") || !strings.Contains(err.Error(), "v3.15.5") {
		t.Errorf("unknown version: %v", err)
	}
}

func TestCalicoIsListedAsCNI(t *testing.T) {
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	n, ok := c.CNI("calico")
	if !ok {
		t.Fatalf("no calico among %v", c.CNINames())
	}
	v, ok := n.Version("v3.28.5")
	if !ok || v.Manifest != "" || len(v.Remote) != 1 || !strings.HasSuffix(v.Remote[0].URL, "/v3.28.5/manifests/calico.yaml") {
		t.Errorf("calico v3.28.5 as a CNI: %+v", v)
	}
	if n.Namespace != "kube-system" || n.Selector != "k8s-app=calico-node" {
		t.Errorf("calico namespace/selector %s %s", n.Namespace, n.Selector)
	}
}

const goodEntry = `versions:
  - version: v3.28.5
    kubernetes: [v1.27, v1.30]
    manifests:
      - url: https://example.com/v3.28.5/calico.yaml
        sha256: "%s"
    images: [docker.io/calico/node:v3.28.5]
    arm64: multi-arch
`

func TestParseCalicoValidates(t *testing.T) {
	pin := strings.Repeat("0123456789abcdef", 4)
	good := strings.Replace(goodEntry, "%s", pin, 1)
	c, err := ParseCalico([]byte(good))
	if err != nil {
		t.Fatalf("good entry: %v", err)
	}
	if v, _ := c.Version("v3.28.5"); !v.Pinned() || v.KubernetesRange() != "v1.27-v1.30" {
		t.Errorf("good entry: %+v", v)
	}
	for name, tc := range map[string]struct{ from, to, want string }{
		"unknown field":    {"    arm64: multi-arch", "    arm64: multi-arch\n    sha: x", "field sha not found"},
		"misspelt sha256":  {"sha256:", "sha265:", "field sha265 not found"},
		"short sha256":     {pin, "abc", "64 lower-case hex"},
		"upper-case hex":   {pin, strings.ToUpper(pin), "64 lower-case hex"},
		"http URL":         {"https://example.com", "http://example.com", "https URL"},
		"not a URL":        {"https://example.com/v3.28.5/calico.yaml", "calico.yaml", "https URL"},
		"bad version":      {"version: v3.28.5", "version: 3.28", "vMAJOR.MINOR.PATCH"},
		"bad k8s":          {"[v1.27, v1.30]", "[1.27, v1.30.1]", "want a minor like v1.30"},
		"no k8s":           {"[v1.27, v1.30]", "[]", "kubernetes: list"},
		"no manifests":     {"    manifests:\n      - url: https://example.com/v3.28.5/calico.yaml\n        sha256: \"" + pin + "\"\n", "", "manifests: at least one"},
		"bad image":        {"[docker.io/calico/node:v3.28.5]", "[\"calico node\"]", "want repository:tag"},
		"no arm64 summary": {"    arm64: multi-arch\n", "", "arm64: say how"},
		"bad issue ref":    {"    arm64: multi-arch\n", "    arm64: multi-arch\n    arm64Issues: [{ref: \"calico 5963\", summary: x}]\n", "want owner/repo#N"},
		"bad fixedIn":      {"    arm64: multi-arch\n", "    arm64: multi-arch\n    arm64Issues: [{ref: a/b#1, summary: x, fixedIn: soon}]\n", "fixedIn"},
		"served API":       {"    arm64: multi-arch\n", "    arm64: multi-arch\n    removedAPIs: [{apiVersion: apps/v1, kind: DaemonSet}]\n", "apps/v1 DaemonSet is not a removed Kubernetes API"},
		"API twice": {"    arm64: multi-arch\n", "    arm64: multi-arch\n    removedAPIs: [{apiVersion: extensions/v1beta1, kind: DaemonSet}, {apiVersion: extensions/v1beta1, kind: DaemonSet}]\n",
			"extensions/v1beta1 DaemonSet listed twice"},
		"API misspelt": {"    arm64: multi-arch\n", "    arm64: multi-arch\n    removedAPIs: [{apiversion: extensions/v1beta1, kind: DaemonSet}]\n", "field apiversion not found"},
	} {
		data := strings.Replace(good, tc.from, tc.to, 1)
		if data == good {
			t.Fatalf("%s: test edit did not apply", name)
		}
		if _, err := ParseCalico([]byte(data)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: want an error containing %q, got %v", name, tc.want, err)
		}
	}
	dup := good + strings.TrimPrefix(strings.Replace(good, "example.com", "example.org", 1), "versions:\n")
	if _, err := ParseCalico([]byte(dup)); err == nil || !strings.Contains(err.Error(), "listed twice") {
		t.Errorf("duplicate version: %v", err)
	}
	sameURL := good + strings.TrimPrefix(strings.Replace(good, "version: v3.28.5", "version: v3.28.4", 1), "versions:\n")
	if _, err := ParseCalico([]byte(sameURL)); err == nil || !strings.Contains(err.Error(), "also a file of") {
		t.Errorf("two versions sharing a URL: %v", err)
	}
	if _, err := ParseCalico([]byte("versions: []\n")); err == nil {
		t.Error("empty catalog accepted")
	}
}

func TestRewriteCalicoPinsKeepsTheRest(t *testing.T) {
	orig, err := ParseCalico(calicoYAML)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := orig.Version("v3.32.1")
	a, b := strings.Repeat("a", 64), strings.Repeat("b", 64)
	pins := map[string]string{v.Manifests[0].URL: a, v.Operator[1].URL: b}
	out, err := RewriteCalicoPins(calicoYAML, pins)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseCalico(out)
	if err != nil {
		t.Fatal(err)
	}
	nv, _ := c.Version("v3.32.1")
	if nv.Manifests[0].SHA256 != a || nv.Operator[1].SHA256 != b || nv.Operator[0].SHA256 != v.Operator[0].SHA256 {
		t.Errorf("pins after rewrite: %+v %+v", nv.Manifests, nv.Operator)
	}
	// Only the two sha256 lines differ; comments and layout stay.
	ol, nl := strings.Split(string(calicoYAML), "\n"), strings.Split(string(out), "\n")
	if len(ol) != len(nl) {
		t.Fatalf("line count %d -> %d", len(ol), len(nl))
	}
	var changed []string
	for i := range ol {
		if ol[i] != nl[i] {
			changed = append(changed, nl[i])
		}
	}
	if len(changed) != 2 || !strings.Contains(changed[0], a) || !strings.Contains(changed[1], b) {
		t.Errorf("changed lines: %q", changed)
	}
	// Re-pinning a pinned file (a changed upstream file) works the same way.
	again, err := RewriteCalicoPins(out, map[string]string{v.Manifests[0].URL: b})
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := ParseCalico(again); c.Versions[len(c.Versions)-1].Manifests[0].SHA256 != b {
		t.Error("re-pin did not take")
	}
}

func TestRewriteCalicoPinsErrors(t *testing.T) {
	if _, err := RewriteCalicoPins(calicoYAML, map[string]string{"https://example.com/nope.yaml": strings.Repeat("a", 64)}); err == nil || !strings.Contains(err.Error(), "no file https://example.com/nope.yaml") {
		t.Errorf("unknown URL: %v", err)
	}
	c, _ := ParseCalico(calicoYAML)
	if _, err := RewriteCalicoPins(calicoYAML, map[string]string{c.Versions[0].Manifests[0].URL: "zz"}); err == nil {
		t.Error("bad pin accepted")
	}
	noField := strings.Replace(goodEntry, "        sha256: \"%s\"\n", "", 1)
	if _, err := RewriteCalicoPins([]byte(noField), map[string]string{"https://example.com/v3.28.5/calico.yaml": strings.Repeat("a", 64)}); err == nil || !strings.Contains(err.Error(), "no sha256 field") {
		t.Errorf("entry without sha256: %v", err)
	}
}

// The seed-era releases carry why no modern Kubernetes runs them; the
// supported range carries nothing that stops it on the Kubernetes built here.
func TestCalicoSkipReasons(t *testing.T) {
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	n, _ := c.CNI("calico")
	want := map[string]string{
		"v3.1.7": "calico v3.1.7 cannot run on Kubernetes v1.37.2: its manifest uses extensions/v1beta1 DaemonSet (removed in v1.16), " +
			"extensions/v1beta1 Deployment (removed in v1.16), rbac.authorization.k8s.io/v1beta1 ClusterRole (removed in v1.22), " +
			"rbac.authorization.k8s.io/v1beta1 ClusterRoleBinding (removed in v1.22); tested on v1.8-v1.10",
		"v3.2.8": "calico v3.2.8 cannot run on Kubernetes v1.37.2: its manifest uses extensions/v1beta1 DaemonSet (removed in v1.16), " +
			"extensions/v1beta1 Deployment (removed in v1.16), rbac.authorization.k8s.io/v1beta1 ClusterRole (removed in v1.22), " +
			"rbac.authorization.k8s.io/v1beta1 ClusterRoleBinding (removed in v1.22); tested on v1.9-v1.11",
		"v3.8.9": "calico v3.8.9 cannot run on Kubernetes v1.37.2: its manifest uses apiextensions.k8s.io/v1beta1 CustomResourceDefinition (removed in v1.22); tested on v1.13-v1.15",
	}
	// v3.17-v3.22: kube-controllers' policy/v1beta1 PodDisruptionBudget,
	// the same rule as the seed era's (skipped without a cluster).
	for v, tested := range map[string]string{"v3.17.6": "v1.17-v1.19", "v3.18.6": "v1.18-v1.20", "v3.19.4": "v1.19-v1.21", "v3.20.6": "v1.19-v1.21", "v3.21.6": "v1.20-v1.22", "v3.22.5": "v1.21-v1.23"} {
		want[v] = "calico " + v + " cannot run on Kubernetes v1.37.2: its manifest uses policy/v1beta1 PodDisruptionBudget (removed in v1.25); tested on " + tested
	}
	for _, v := range n.Versions {
		got, err := v.SkipReason("calico", "v1.37.2")
		if err != nil || got != want[v.Version] {
			t.Errorf("%s on v1.37.2: %q, %v\nwant %q", v.Version, got, err, want[v.Version])
		}
	}
	v31, _ := n.Version("v3.1.7")
	if r, err := v31.SkipReason("calico", "v1.10.13"); r != "" || err != nil {
		t.Errorf("v3.1.7 on the Kubernetes it was tested on: %q, %v", r, err)
	}
	if rs, _ := v31.CannotRunOn("v1.16.0"); len(rs) != 2 {
		t.Errorf("v3.1.7 on v1.16: %v, want the two extensions/v1beta1 workloads", rs)
	}
	if v22, _ := n.Version("v3.22.5"); true {
		if r, _ := v22.SkipReason("calico", "v1.24.17"); r != "" {
			t.Errorf("v3.22.5 on v1.24, which still serves policy/v1beta1: %q", r)
		}
	}
	if _, err := v31.SkipReason("calico", "latest"); err == nil {
		t.Error("SkipReason accepted Kubernetes version \"latest\"")
	}
}
