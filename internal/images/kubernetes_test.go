package images

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func TestStagingVersion(t *testing.T) {
	for in, want := range map[string]string{
		"v1.37.2":        "v0.37.2",
		"v1.36.3":        "v0.36.3",
		"v1.38.0-beta.0": "v0.38.0-beta.0",
	} {
		if got, err := stagingVersion(in); err != nil || got != want {
			t.Errorf("stagingVersion(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"1.37.2", "v1.37", "v2.0.0", "v1.37.2+build", "latest", ""} {
		if got, err := stagingVersion(bad); err == nil {
			t.Errorf("stagingVersion(%q) = %q, want an error", bad, got)
		}
	}
}

const sampleKubeGoMod = `module k8s.io/kubernetes

go 1.26.0

require (
	github.com/spf13/cobra v1.10.2
	k8s.io/api v0.0.0
	k8s.io/client-go v0.0.0
)

replace (
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/client-go => ./staging/src/k8s.io/client-go
	github.com/some/fork => github.com/other/fork v1.2.3
)

replace k8s.io/kubectl => ./staging/src/k8s.io/kubectl
`

func TestStagingModules(t *testing.T) {
	got, err := stagingModules("go.mod", []byte(sampleKubeGoMod))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"k8s.io/api", "k8s.io/client-go", "k8s.io/kubectl"}
	if !slices.Equal(got, want) {
		t.Errorf("stagingModules = %v, want %v", got, want)
	}
	if _, err := stagingModules("go.mod", []byte("module x\n")); err == nil {
		t.Errorf("a go.mod without staging modules was accepted")
	}
	if _, err := stagingModules("go.mod", []byte("modul x\n")); err == nil {
		t.Errorf("an unparsable go.mod was accepted")
	}
}

// The real go.mod, when the module cache has it (no network is used).
func TestStagingModulesOfKubernetes(t *testing.T) {
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Skip("no go command")
	}
	file := filepath.Join(strings.TrimSpace(string(out)), "cache", "download", "k8s.io", "kubernetes", "@v", "v1.37.2.mod")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Skip("k8s.io/kubernetes@v1.37.2 not in the module cache")
	}
	mods, err := stagingModules(file, data)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"k8s.io/api", "k8s.io/client-go", "k8s.io/component-base", "k8s.io/kubectl", "k8s.io/cri-api"} {
		if !slices.Contains(mods, m) {
			t.Errorf("staging modules lack %s: %v", m, mods)
		}
	}
	for _, m := range mods {
		if !strings.HasPrefix(m, "k8s.io/") {
			t.Errorf("unexpected staging module %s", m)
		}
	}
	t.Logf("%d staging modules", len(mods))
}

func TestKubeVersionLDFlags(t *testing.T) {
	flags := strings.Join(kubeVersionLDFlags("v1.37.2", "2026-10-27T12:01:04Z"), " ")
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		for _, want := range []string{
			".gitVersion=v1.37.2", ".gitMajor=1", ".gitMinor=37", ".gitCommit= ",
			".gitTreeState=archive", ".buildDate=2026-10-27T12:01:04Z",
		} {
			if !strings.Contains(flags+" ", "-X="+pkg+want) {
				t.Errorf("ldflags lack %s%s: %s", pkg, want, flags)
			}
		}
	}
	if f := strings.Join(kubeVersionLDFlags("v1.38.0-beta.0", "d"), " "); !strings.Contains(f, "gitMinor=38 ") {
		t.Errorf("prerelease minor: %s", f)
	}
}

func TestKubeEntry(t *testing.T) {
	n1, k1, err := kubeEntry("v1.37.2", "amd64", KubeBinaryNames)
	if err != nil {
		t.Skip(err)
	}
	n2, k2, _ := kubeEntry("v1.37.2", "amd64", []string{"kubeadm"})
	n3, k3, _ := kubeEntry("v1.37.2", "arm64", KubeBinaryNames)
	if n1 != "kubernetes-v1.37.2-amd64" || n2 != "kubeadm-v1.37.2-amd64" || n3 != "kubernetes-v1.37.2-arm64" {
		t.Errorf("names %s %s %s", n1, n2, n3)
	}
	if k1 == k2 || k1 == k3 {
		t.Errorf("keys collide: %s %s %s", k1, k2, k3)
	}
	if _, k, _ := kubeEntry("v1.37.2", "amd64", slices.Clone(KubeBinaryNames)); k != k1 {
		t.Errorf("key not stable")
	}
}

// TestKubernetes builds all Kubernetes binaries (~6 minutes cold on 2 cores
// per architecture) for the host architecture, or $CNIMATRIX_TEST_ARCHES,
// and checks they carry the real version. $CNIMATRIX_KUBE_VERSION picks the
// version (default v1.37.2).
func TestKubernetes(t *testing.T) {
	if testing.Short() || os.Getenv("CNIMATRIX_SLOW") != "1" {
		t.Skip("set CNIMATRIX_SLOW=1 (and no -short) to build Kubernetes; it takes minutes")
	}
	version := "v1.37.2"
	if v := os.Getenv("CNIMATRIX_KUBE_VERSION"); v != "" {
		version = v
	}
	arches := strings.Fields(os.Getenv("CNIMATRIX_TEST_ARCHES"))
	if len(arches) == 0 {
		arches = []string{runtime.GOARCH}
	}
	c := goBuildTestCache(t)
	ctx := context.Background()
	for _, arch := range arches {
		t.Run(version+"-"+arch, func(t *testing.T) {
			var kb *KubeBinaries
			buildTwice(t, "kubernetes "+version+" "+arch, func() (string, error) {
				var err error
				kb, err = c.Kubernetes(ctx, version, arch)
				if err != nil {
					return "", err
				}
				return kb.Dir, nil
			})
			m := elfMachines(t, kb.Dir)
			for _, name := range KubeBinaryNames {
				if m[name] != elfMachineOfArch[arch] {
					t.Errorf("%s: machine %v, want %v", name, m[name], elfMachineOfArch[arch])
				}
			}
			if arch == runtime.GOARCH {
				out, err := exec.Command(kb.Path("kubectl"), "version", "--client").CombinedOutput()
				t.Logf("kubectl version --client:\n%s", out)
				if err != nil || !strings.Contains(string(out), "Client Version: "+version) {
					t.Errorf("kubectl version --client: %v, want Client Version: %s", err, version)
				}
				out, err = exec.Command(kb.Path("kubelet"), "--version").CombinedOutput()
				if err != nil || strings.TrimSpace(string(out)) != "Kubernetes "+version {
					t.Errorf("kubelet --version = %q, %v", out, err)
				}
			}
			// On a foreign arch this runs a host-arch kubeadm instead.
			images, err := kb.ControlPlaneImages(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("kubeadm config images list:\n%s", strings.Join(images, "\n"))
			for _, name := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"} {
				if !slices.Contains(images, "registry.k8s.io/"+name+":"+version) {
					t.Errorf("images lack %s:%s", name, version)
				}
			}
			for _, prefix := range []string{"registry.k8s.io/coredns/coredns:", "registry.k8s.io/pause:", "registry.k8s.io/etcd:"} {
				if !slices.ContainsFunc(images, func(s string) bool { return strings.HasPrefix(s, prefix) }) {
					t.Errorf("images lack %s*", prefix)
				}
			}
		})
	}
}

// TestHostKubeadm builds (or finds) a host-arch kubeadm alone, as
// ControlPlaneImages does for a foreign-arch KubeBinaries, and lists images.
func TestHostKubeadm(t *testing.T) {
	if testing.Short() || os.Getenv("CNIMATRIX_SLOW") != "1" {
		t.Skip("set CNIMATRIX_SLOW=1 (and no -short): builds kubeadm, ~1.5 min cold")
	}
	version := "v1.37.2"
	if v := os.Getenv("CNIMATRIX_KUBE_VERSION"); v != "" {
		version = v
	}
	c := goBuildTestCache(t)
	ctx := context.Background()
	var kubeadm string
	buildTwice(t, "host kubeadm "+version, func() (string, error) {
		var err error
		kubeadm, err = c.HostKubeadm(ctx, version)
		return filepath.Dir(kubeadm), err
	})
	images, err := kubeadmImages(ctx, kubeadm, version)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s config images list --kubernetes-version %s:\n%s", kubeadm, version, strings.Join(images, "\n"))
	if !slices.Contains(images, "registry.k8s.io/kube-apiserver:"+version) {
		t.Errorf("images lack kube-apiserver:%s", version)
	}
}
