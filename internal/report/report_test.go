package report

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"

	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

func sample() *matrix.Matrix {
	ok := matrix.Cell{CNI: "flannel", CNIVersion: "v0.28.10", Kubernetes: "v1.37.2", Arch: "amd64", Provider: "kind"}
	bad, infra, none := ok, ok, ok
	bad.Variant, infra.Variant, none.Variant = "bad", "infra", "none"
	m := matrix.New("t", []matrix.Cell{ok, bad, infra, none})
	m.Record(matrix.Result{Cell: ok, Outcome: matrix.Pass, Phases: []matrix.Phase{{Name: "cluster", Outcome: matrix.Pass}, {Name: "check:pod-to-pod", Outcome: matrix.Pass}}})
	m.Record(matrix.Result{Cell: bad, Outcome: matrix.Fail, RootCause: "image-pull", Phases: []matrix.Phase{
		{Name: "cluster", Outcome: matrix.Pass},
		{Name: "cni-ready", Outcome: matrix.Fail, Error: "ErrImagePull x", Evidence: []matrix.Evidence{{Source: "node-a", Target: "img", Detail: "not found"}}}}})
	m.Record(matrix.Result{Cell: infra, Outcome: matrix.InfraError, Phases: []matrix.Phase{{Name: "cluster", Outcome: matrix.InfraError, Error: "docker", Infra: true}}})
	return m
}

func TestJUnitSeparatesInfraFromCNIFailures(t *testing.T) {
	var b bytes.Buffer
	if err := JUnit(&b, sample()); err != nil {
		t.Fatal(err)
	}
	var doc junitSuites
	if err := xml.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatalf("junit does not parse: %v\n%s", err, b.String())
	}
	if len(doc.Suites) != 4 {
		t.Fatalf("want 4 suites, got %d", len(doc.Suites))
	}
	// 1 failure (cni-ready), errors: cluster infra + unknown cell without phases.
	if doc.Failures != 1 || doc.Errors != 2 {
		t.Fatalf("failures=%d errors=%d, want 1 and 2:\n%s", doc.Failures, doc.Errors, b.String())
	}
	if !strings.Contains(b.String(), `type="infra-error"`) || !strings.Contains(b.String(), `type="unknown"`) {
		t.Errorf("junit lacks infra-error or unknown types:\n%s", b.String())
	}
}

func TestMarkdownShowsEveryCellAndEvidence(t *testing.T) {
	var b bytes.Buffer
	if err := Markdown(&b, sample()); err != nil {
		t.Fatal(err)
	}
	s := b.String()
	for _, want := range []string{"✅ pass", "❌ fail", "image-pull", "⚠️ infra-error", "❔ unknown", "not found", "4 cells"} {
		if !strings.Contains(s, want) {
			t.Errorf("markdown lacks %q:\n%s", want, s)
		}
	}
}

// A cell on an existing cluster says which CNI it found there.
func TestReportsShowTheInstalledCNI(t *testing.T) {
	m := &matrix.Matrix{Schema: matrix.SchemaVersion, Scenario: "s", Results: []matrix.Result{{
		Cell: matrix.Cell{CNI: "flannel", CNIVersion: "v0.28.10", Kubernetes: "v1.37.2", Arch: "arm64", Provider: "existing"},
		ID:   "flannel-v0.28.10_k8s-v1.37.2_arm64_existing", Outcome: matrix.Pass, Installed: "flannel v0.28.10", ClusterName: "prod@10.0.0.1:6443",
	}}}
	var md, html bytes.Buffer
	if err := Markdown(&md, m); err != nil {
		t.Fatal(err)
	}
	if err := HTML(&html, m); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), "CNI found installed on the cluster: flannel v0.28.10") {
		t.Errorf("markdown lacks the installed CNI:\n%s", md.String())
	}
	if !strings.Contains(html.String(), "<dt>CNI found installed</dt><dd>flannel v0.28.10</dd>") {
		t.Errorf("HTML lacks the installed CNI")
	}
}

// A cell says where each of its CNI images came from.
func TestReportsShowImageSources(t *testing.T) {
	m := &matrix.Matrix{Schema: matrix.SchemaVersion, Scenario: "s", Results: []matrix.Result{{
		Cell: matrix.Cell{CNI: "calico", CNIVersion: "v3.32.1", Kubernetes: "v1.37.2", Arch: "amd64", Provider: "kind"},
		ID:   "calico-v3.32.1_k8s-v1.37.2_amd64_kind", Outcome: matrix.Pass, Images: matrix.ImagesUpstream,
		NodeImage: &matrix.ImageSource{Image: "docker.io/kindest/node:v1.37.2", Source: "pulled-through", Detail: "https://index.docker.io"},
		ImageSources: []matrix.ImageSource{
			{Image: "quay.io/calico/node:v3.32.1", Source: "pulled-through", Detail: "https://quay.io"},
			{Image: "quay.io/calico/cni:v3.32.1", Source: "imported", Detail: "/data/calico-cni.tar"},
			{Image: "quay.io/calico/kube-controllers:v3.32.1", Source: "missing"},
		},
	}}}
	var md, html bytes.Buffer
	if err := Markdown(&md, m); err != nil {
		t.Fatal(err)
	}
	if err := HTML(&html, m); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"quay.io/calico/node:v3.32.1`: pulled-through from https://quay.io",
		"quay.io/calico/cni:v3.32.1`: imported (/data/calico-cni.tar)",
		"quay.io/calico/kube-controllers:v3.32.1`: missing",
		"node image `docker.io/kindest/node:v1.37.2`: pulled-through from https://index.docker.io",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
	if !strings.Contains(html.String(), "<li><code>quay.io/calico/node:v3.32.1: pulled-through from https://quay.io</code></li>") {
		t.Errorf("HTML lacks the image sources")
	}
	if !strings.Contains(html.String(), "<dt>Node image</dt><dd class=\"node-image\"><code>docker.io/kindest/node:v1.37.2: pulled-through from https://index.docker.io</code></dd>") {
		t.Errorf("HTML lacks the node image")
	}
}
