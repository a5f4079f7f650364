package engine

import (
	"context"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/cnimatrix/cnimatrix/internal/checks"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

func podSpec(image string, hostPaths ...string) corev1.PodSpec {
	spec := corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}}
	for _, p := range hostPaths {
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "v", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: p}}})
	}
	return spec
}

func ds(ns, name string, spec corev1.PodSpec) *appsv1.DaemonSet {
	return &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: appsv1.DaemonSetSpec{Template: corev1.PodTemplateSpec{Spec: spec}}}
}

func deploy(ns, name string, spec corev1.PodSpec) *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: spec}}}
}

func TestDetectCNI(t *testing.T) {
	client := fake.NewClientset(
		// A Calico manifest install: calico-node mounts the CNI dirs,
		// kube-controllers sits beside it in kube-system, and so does
		// CoreDNS, which is not the CNI's.
		ds("kube-system", "calico-node", podSpec("quay.io/calico/node:v3.32.1", "/opt/cni/bin", "/etc/cni/net.d")),
		deploy("kube-system", "calico-kube-controllers", podSpec("quay.io/calico/kube-controllers:v3.32.1")),
		deploy("kube-system", "coredns", podSpec("registry.k8s.io/coredns/coredns:v1.12.0")),
		// kube-proxy is a DaemonSet without the CNI's host dirs.
		ds("kube-system", "kube-proxy", podSpec("registry.k8s.io/kube-proxy:v1.37.2", "/lib/modules")),
		deploy("default", "web", podSpec("nginx:1")),
	)
	found, err := DetectCNI(context.Background(), client)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range found {
		got[f.Workload.String()] = f.CNI + " " + f.Version
	}
	want := map[string]string{
		"daemonset kube-system/calico-node":              "calico v3.32.1",
		"deployment kube-system/calico-kube-controllers": "calico v3.32.1",
	}
	if len(got) != len(want) {
		t.Fatalf("found %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	if d := describeDetected(found); d != "calico v3.32.1" {
		t.Errorf("describeDetected = %q", d)
	}

	// flannel by its own namespace, and an unknown CNI is "other".
	client = fake.NewClientset(
		ds("kube-flannel", "kube-flannel-ds", podSpec("docker.io/cnimatrix/flannel:v0.28.10@sha256:abc", "/etc/cni/net.d")),
		ds("kube-system", "acme-net", podSpec("example.com/acme/agent:2.0", "/etc/cni/net.d/")),
	)
	found, err = DetectCNI(context.Background(), client)
	if err != nil {
		t.Fatal(err)
	}
	if d := describeDetected(found); d != "other, flannel v0.28.10" && d != "flannel v0.28.10, other" {
		t.Errorf("describeDetected = %q", d)
	}
}

func TestSameKubernetes(t *testing.T) {
	for _, c := range []struct {
		server, cell string
		want         bool
	}{
		{"v1.37.2", "v1.37.2", true},
		{"v1.37.2-eks-4a5b", "v1.37.2", true},
		{"v1.37.2+k3s1", "v1.37.2", true},
		{"v1.37.20", "v1.37.2", false},
		{"v1.36.0", "v1.37.2", false},
	} {
		if got := sameKubernetes(c.server, c.cell); got != c.want {
			t.Errorf("sameKubernetes(%q, %q) = %v", c.server, c.cell, got)
		}
	}
}

// Installed mode checks the cluster's own Calico without asserting the
// scenario's pool or tunnel on it; install mode keeps them.
func TestExistingChecksOfACalicoCell(t *testing.T) {
	cni := &scenario.CNISpec{Name: "calico"}
	names := func(list []checks.Check) string {
		var out []string
		for _, c := range list {
			out = append(out, c.Name())
		}
		return strings.Join(out, " ")
	}
	all := cniChecks(cni, "10.244.0.0/16", "VXLAN")
	installed := names(installedChecks(existingChecks(all)))
	install := names(existingChecks(all))
	for _, gone := range []string{"HostToNodePort", "IPPool", "TunnelDevice"} {
		if strings.Contains(installed, gone) {
			t.Errorf("installed mode runs %s: %s", gone, installed)
		}
	}
	for _, kept := range []string{"CalicoNodeReady", "NetworkPolicy", "CNIWorkloadArch", "PodToServiceDNS"} {
		if !strings.Contains(installed, kept) {
			t.Errorf("installed mode lacks %s: %s", kept, installed)
		}
	}
	if !strings.Contains(install, "IPPool") || strings.Contains(install, "HostToNodePort") {
		t.Errorf("install mode: %s", install)
	}
}
