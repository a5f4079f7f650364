package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/cnimatrix/cnimatrix/internal/catalog"
	"github.com/cnimatrix/cnimatrix/internal/cluster"
	"github.com/cnimatrix/cnimatrix/internal/cluster/existing"
	"github.com/cnimatrix/cnimatrix/internal/install"
	"github.com/cnimatrix/cnimatrix/internal/logx"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/repo"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

// provider existing on a cluster the suite makes the ordinary way (kind,
// no cnimatrix cell): flannel installed by the suite as a cluster's owner
// would, then cnimatrix run against it in installed mode with a kubeconfig
// bound to exactly docs/existing-cluster-rbac.yaml; the cluster's objects
// before and after must be the same. Then, with one right taken away, the
// run must say which; and in install mode on the bare cluster, what it
// applied must be gone after. Results go to <out>/existing.json, not the
// matrix (their cells are not the default scenarios').
func existingSpec() {
	It("provider existing: checks a cluster it did not create with namespaced rights only, and leaves it as it was", Label("provider:existing"), func(ctx SpecContext) {
		if reuseScenario == nil {
			Skip("CNIMATRIX_SCENARIOS is set: the provider-existing self-test runs with the default scenarios only")
		}
		root, err := repo.Root()
		Expect(err).NotTo(HaveOccurred())
		name := eng.ClusterNameFor("existing")
		By("a kind cluster made outside cnimatrix's cells, with no CNI")
		cl, err := eng.CreateKindCluster(ctx, name, "v1.37.2", 2)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func(ctx SpecContext) { Expect(eng.DeleteKindCluster(ctx, name)).To(Succeed()) }, NodeTimeout(4*time.Minute))
		cfg, err := cl.RESTConfig()
		Expect(err).NotTo(HaveOccurred())
		client := kubernetes.NewForConfigOrDie(cfg)
		dir := GinkgoT().TempDir()
		admin := filepath.Join(dir, "admin.kubeconfig")
		Expect(os.WriteFile(admin, cl.Kubeconfig, 0o600)).To(Succeed())

		s := loadExisting(root, admin, scenario.ExistingInstalled)
		cell := onlyCell(s, "amd64")
		flannel, err := os.ReadFile(s.CNI.Manifests[cell.CNIVersion])
		Expect(err).NotTo(HaveOccurred())
		flannelObjs, err := install.ParseManifest(flannel)
		Expect(err).NotTo(HaveOccurred())

		By("flannel installed by its owner, and the RBAC of docs/existing-cluster-rbac.yaml")
		owner := install.ApplyOptions{FieldManager: "cluster-owner"}
		Expect(install.Apply(ctx, cfg, flannelObjs, owner)).To(Succeed())
		wctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
		defer cancel()
		Expect(install.WaitReady(wctx, cfg, flannelObjs, owner)).To(Succeed())
		rbac, err := os.ReadFile(filepath.Join(root, "docs", "existing-cluster-rbac.yaml"))
		Expect(err).NotTo(HaveOccurred())
		rbacObjs, err := install.ParseManifest(rbac)
		Expect(err).NotTo(HaveOccurred())
		Expect(install.Apply(ctx, cfg, rbacObjs, owner)).To(Succeed())
		restricted := restrictedKubeconfig(ctx, client, cl.Kubeconfig, dir)

		before := objectSet(ctx, cfg)
		results := map[string]matrix.Result{}
		DeferCleanup(func() { writeJSON(filepath.Join(outDir, "existing.json"), results) })

		By("installed mode, restricted kubeconfig: the checks run, nothing is left or changed")
		s = loadExisting(root, restricted, scenario.ExistingInstalled)
		r := eng.RunCell(ctx, s, onlyCell(s, "amd64"))
		results["installed-amd64"] = r
		GinkgoWriter.Printf("%s: %s %s %s\n", r.ID, r.Outcome, r.RootCause, r.Reason)
		Expect(r.Outcome).To(Equal(matrix.Pass), r.Reason)
		Expect(r.Installed).To(Equal("flannel v0.28.10"))
		Expect(checkPhases(r)).To(ContainElements("check:Workloads", "check:PodToPodAcrossNodes", "check:PodToServiceDNS", "check:CNIWorkloadArch"))
		Expect(phaseNames(r)).NotTo(ContainElement("cni-install"))
		after := objectSet(ctx, cfg)
		Expect(diffSets(before, after)).To(BeEmpty(), "objects added (+) or removed (-) by the run")
		Expect(managedBy(ctx, cfg, "cnimatrix")).To(BeEmpty(), "objects cnimatrix applied or edited")

		By("an arch the cluster has no node of: skipped, with the reason")
		r = eng.RunCell(ctx, s, onlyCell(s, "arm64"))
		results["installed-arm64"] = r
		Expect(r.Outcome).To(Equal(matrix.Skipped))
		Expect(r.Reason).To(ContainSubstring("no node of arch arm64"))

		By("one right taken away (pods/exec): the run fails and says which")
		Expect(client.RbacV1().Roles("cnimatrix-checks").Delete(ctx, "cnimatrix-checks", metav1.DeleteOptions{})).To(Succeed())
		noExec := withoutExec(rbacObjs)
		_, err = client.RbacV1().Roles("cnimatrix-checks").Create(ctx, noExec, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		r = eng.RunCell(ctx, s, onlyCell(s, "amd64"))
		results["installed-no-exec"] = r
		GinkgoWriter.Printf("%s: %s %s %s\n", r.ID, r.Outcome, r.RootCause, r.Reason)
		// The harness could not ask its pods: no verdict on the CNI.
		Expect(r.Outcome).To(Equal(matrix.InfraError), r.Reason)
		Expect(r.Reason).To(And(ContainSubstring("forbidden"), ContainSubstring("pods/exec"), ContainSubstring("existing-cluster-rbac.yaml")))
		Expect(diffSets(before, objectSet(ctx, cfg))).To(BeEmpty(), "objects left by the run that failed")

		By("install mode beside the cluster's own CNI: refused, nothing applied")
		s = loadExisting(root, admin, scenario.ExistingInstall)
		r = eng.RunCell(ctx, s, onlyCell(s, "amd64"))
		results["install-beside-flannel"] = r
		Expect(r.Outcome).To(Equal(matrix.InfraError), r.Reason)
		Expect(r.Reason).To(And(ContainSubstring("already runs flannel v0.28.10"), ContainSubstring("--replace-cni")))
		Expect(diffSets(before, objectSet(ctx, cfg))).To(BeEmpty(), "objects left by the refused install")

		By("gc --kubeconfig: what a killed run left goes, a live run's namespace stays")
		for ns, owner := range map[string]string{"cnimatrix-gc-live": eng.RunID(), "cnimatrix-gc-killed": "00dead"} {
			_, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
				Labels: map[string]string{cluster.Label: "checks"}, Annotations: map[string]string{cluster.OwnerAnnotation: owner}}}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
		}
		Expect(existing.GC(ctx, logx.New(GinkgoWriter, true), admin, "", false)).To(Succeed())
		Eventually(ctx, func() []string { return checksNamespaces(ctx, client) }).WithTimeout(2 * time.Minute).Should(Equal([]string{"cnimatrix-gc-live"}))
		Expect(existing.GC(ctx, logx.New(GinkgoWriter, true), admin, "", true)).To(Succeed())
		Eventually(ctx, func() []string { return checksNamespaces(ctx, client) }).WithTimeout(2 * time.Minute).Should(BeEmpty())

		By("install mode on the bare cluster: what it applied is gone after")
		Expect(install.Delete(ctx, cfg, append(flannelObjs, rbacObjs...))).To(Succeed())
		Expect(install.WaitDeleted(wctx, cfg, append(flannelObjs, rbacObjs...))).To(Succeed())
		bare := objectSet(ctx, cfg)
		s = loadExisting(root, admin, scenario.ExistingInstall)
		r = eng.RunCell(ctx, s, onlyCell(s, "amd64"))
		results["install-amd64"] = r
		GinkgoWriter.Printf("%s: %s %s %s\n", r.ID, r.Outcome, r.RootCause, r.Reason)
		Expect(r.Outcome).To(Equal(matrix.Pass), r.Reason)
		Expect(phaseNames(r)).To(ContainElements("cni-install", "cni-ready", "uninstall"))
		Expect(diffSets(bare, objectSet(ctx, cfg))).To(BeEmpty(), "objects added (+) or removed (-) by the install-mode run")
	}, SpecTimeout(25*time.Minute))
}

// checksNamespaces are the namespaces labelled as the checks', those
// still terminating too.
func checksNamespaces(ctx context.Context, client kubernetes.Interface) []string {
	l, err := client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: cluster.Label + "=checks"})
	Expect(err).NotTo(HaveOccurred())
	var out []string
	for _, ns := range l.Items {
		out = append(out, ns.Name)
	}
	return out
}

func loadExisting(root, kubeconfig, mode string) *scenario.Scenario {
	cat, err := catalog.Load()
	Expect(err).NotTo(HaveOccurred())
	s, err := scenario.Load(filepath.Join(root, "e2e", "testdata", "existing-flannel.yaml"), cat, root)
	Expect(err).NotTo(HaveOccurred())
	s.UseExisting(kubeconfig, "", mode, false)
	return s
}

func onlyCell(s *scenario.Scenario, arch string) matrix.Cell {
	for _, c := range s.Cells() {
		if c.Arch == arch {
			return c
		}
	}
	Fail("no " + arch + " cell in " + s.Name)
	return matrix.Cell{}
}

// restrictedKubeconfig is a kubeconfig for the ServiceAccount of
// docs/existing-cluster-rbac.yaml, with a short-lived token.
func restrictedKubeconfig(ctx context.Context, client kubernetes.Interface, admin []byte, dir string) string {
	exp := int64(3600)
	tr, err := client.CoreV1().ServiceAccounts("cnimatrix-checks").CreateToken(ctx, "cnimatrix",
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	cfg, err := clientcmd.Load(admin)
	Expect(err).NotTo(HaveOccurred())
	ctxName := cfg.CurrentContext
	cur := cfg.Contexts[ctxName]
	cfg.AuthInfos = map[string]*clientcmdapi.AuthInfo{"cnimatrix": {Token: tr.Status.Token}}
	cfg.Contexts = map[string]*clientcmdapi.Context{ctxName: {Cluster: cur.Cluster, AuthInfo: "cnimatrix"}}
	path := filepath.Join(dir, "restricted.kubeconfig")
	Expect(clientcmd.WriteToFile(*cfg, path)).To(Succeed())
	return path
}

// withoutExec is the checks' Role of the RBAC file without pods/exec.
func withoutExec(objs []*unstructured.Unstructured) *rbacv1.Role {
	for _, o := range objs {
		if o.GetKind() != "Role" {
			continue
		}
		var role rbacv1.Role
		Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &role)).To(Succeed())
		role.Rules = slices.DeleteFunc(role.Rules, func(r rbacv1.PolicyRule) bool { return slices.Contains(r.Resources, "pods/exec") })
		role.ResourceVersion = ""
		return &role
	}
	Fail("no Role in the RBAC file")
	return nil
}

// managedBy names the objects a field manager wrote.
func managedBy(ctx context.Context, cfg *rest.Config, manager string) []string {
	var out []string
	eachObject(ctx, cfg, func(group, kind string, it *unstructured.Unstructured) {
		for _, mf := range it.GetManagedFields() {
			if mf.Manager == manager {
				out = append(out, kind+" "+it.GetNamespace()+"/"+it.GetName())
			}
		}
	})
	return out
}

func phaseNames(r matrix.Result) []string {
	var out []string
	for _, p := range r.Phases {
		out = append(out, p.Name)
	}
	return out
}

func checkPhases(r matrix.Result) []string {
	var out []string
	for _, p := range r.Phases {
		if strings.HasPrefix(p.Name, "check:") && p.Outcome == matrix.Pass {
			out = append(out, p.Name)
		}
	}
	return out
}

func writeJSON(path string, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	Expect(err).NotTo(HaveOccurred())
	Expect(os.WriteFile(path, b, 0o644)).To(Succeed())
}

// objectSet is every object of the cluster as "group/Kind namespace/name",
// except those that come and go on their own (events, leases).
func objectSet(ctx context.Context, cfg *rest.Config) []string {
	var out []string
	eachObject(ctx, cfg, func(group, kind string, it *unstructured.Unstructured) {
		if kind != "Lease" {
			out = append(out, fmt.Sprintf("%s/%s %s/%s", group, kind, it.GetNamespace(), it.GetName()))
		}
	})
	slices.Sort(out)
	return out
}

// eachObject calls fn with every object of every kind the cluster serves
// and can list, except Events.
func eachObject(ctx context.Context, cfg *rest.Config, fn func(group, kind string, it *unstructured.Unstructured)) {
	lists, err := discovery.NewDiscoveryClientForConfigOrDie(cfg).ServerPreferredResources()
	Expect(err).NotTo(HaveOccurred())
	dyn := dynamic.NewForConfigOrDie(cfg)
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		Expect(err).NotTo(HaveOccurred())
		for _, res := range l.APIResources {
			if !slices.Contains(res.Verbs, "list") || strings.Contains(res.Name, "/") || res.Kind == "Event" {
				continue
			}
			items, err := dyn.Resource(gv.WithResource(res.Name)).List(ctx, metav1.ListOptions{})
			Expect(err).NotTo(HaveOccurred(), "list %s", res.Name)
			for i := range items.Items {
				fn(gv.Group, res.Kind, &items.Items[i])
			}
		}
	}
}

// diffSets is what after has that before has not (+) and the reverse (-).
func diffSets(before, after []string) []string {
	var d []string
	for _, a := range after {
		if _, found := slices.BinarySearch(before, a); !found {
			d = append(d, "+ "+a)
		}
	}
	for _, b := range before {
		if _, found := slices.BinarySearch(after, b); !found {
			d = append(d, "- "+b)
		}
	}
	return d
}
