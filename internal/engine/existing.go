package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"

	"github.com/cnimatrix/cnimatrix/internal/checks"
	"github.com/cnimatrix/cnimatrix/internal/cluster"
	"github.com/cnimatrix/cnimatrix/internal/cluster/existing"
	"github.com/cnimatrix/cnimatrix/internal/install"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

// A cell of provider existing runs on a cluster cnimatrix did not create.
// It changes the journey in four places, all here: the cluster step only
// connects (and skips the cell when no node has its arch, or the cluster
// runs another Kubernetes); in installed mode the CNI is detected instead
// of applied; nodes run no commands (no kernel facts); and the end deletes
// only what the run made: the checks' namespace and, in install mode,
// what it applied.

// existingProvider is the provider of a provider-existing scenario.
func existingProvider(s *scenario.Scenario) (cluster.Provider, error) {
	if s.Existing == nil || s.Existing.Kubeconfig == "" {
		return nil, errors.New("provider existing needs a kubeconfig: existing.kubeconfig in the scenario, or cnimatrix run --kubeconfig FILE")
	}
	return existing.New(s.Existing.Kubeconfig, s.Existing.Context), nil
}

// onExisting: the cell runs on a cluster cnimatrix did not create.
func (p *CellPlan) onExisting() bool { return p.Cell.Provider == scenario.ProviderExisting }

// installed: the cell checks the CNI the existing cluster already runs.
func (p *CellPlan) installed() bool {
	return p.onExisting() && p.scenario.Existing != nil && p.scenario.Existing.Mode == scenario.ExistingInstalled
}

// existingChecks are the checks of a cell on an existing cluster: those
// that need only the API. HostToNodePort is left out: the machine running
// cnimatrix is often outside the nodes' network, and a firewall there says
// nothing about the CNI.
func existingChecks(list []checks.Check) []checks.Check {
	return slices.DeleteFunc(slices.Clone(list), func(c checks.Check) bool { return c.Name() == checks.NameHostToNodePort })
}

// installedChecks leaves out of a cell on a CNI the cluster already runs
// the checks of how the scenario configures the CNI: its pool (IPPool)
// and tunnel device (TunnelDevice, which also needs the nodes) are the
// cluster owner's choice, not the scenario's.
func installedChecks(list []checks.Check) []checks.Check {
	return slices.DeleteFunc(list, func(c checks.Check) bool {
		return c.Name() == checks.NameIPPool || c.Name() == checks.NameTunnelDevice
	})
}

// connectExisting is the cluster step of a provider-existing cell: connect,
// then skip the cell when the cluster cannot answer its question.
func (c *cellRun) connectExisting(ctx context.Context) StepResult {
	p := c.plan
	cctx, cancel := context.WithTimeout(ctx, p.Timeouts.Cluster)
	defer cancel()
	cl, err := c.prov.Create(cctx, cluster.Spec{Name: c.e.ClusterName(p.Cell)})
	if err != nil {
		return StepResult{Err: err}
	}
	c.cl = cl
	c.result.ClusterName = cl.Name
	var ev []matrix.Evidence
	var ofArch []string
	for _, n := range cl.Nodes {
		ev = append(ev, matrix.Evidence{Check: "cluster", Source: c.prov.Name(), Target: n.Name, OK: true, Detail: fmt.Sprintf("%s node, arch %s, %s", n.Role, cmp.Or(n.Arch, "-"), cmp.Or(n.InternalIP, "-"))})
		if n.Arch == p.Cell.Arch {
			ofArch = append(ofArch, n.Name)
		}
	}
	if len(ofArch) == 0 {
		return StepResult{Evidence: ev, Skip: fmt.Sprintf("%s has no node of arch %s (kubernetes.io/arch): nothing there can answer this cell", cl.Name, p.Cell.Arch)}
	}
	cfg, err := cl.RESTConfig()
	if err != nil {
		return StepResult{Evidence: ev, Err: err}
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return StepResult{Evidence: ev, Err: err}
	}
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		return StepResult{Evidence: ev, Err: fmt.Errorf("%s: server version: %w", cl.Name, err)}
	}
	ev = append(ev, matrix.Evidence{Check: "cluster", Source: c.prov.Name(), Target: cl.Name, OK: true, Detail: "Kubernetes " + v.GitVersion})
	if !sameKubernetes(v.GitVersion, p.Cell.Kubernetes) {
		return StepResult{Evidence: ev, Skip: fmt.Sprintf("%s runs Kubernetes %s, the cell asks about %s", cl.Name, v.GitVersion, p.Cell.Kubernetes)}
	}
	return StepResult{Evidence: ev}
}

// sameKubernetes compares a server's version (v1.37.2, or a vendor's
// v1.37.2-eks-1234) with a cell's.
func sameKubernetes(server, cell string) bool {
	if server == cell {
		return true
	}
	return strings.HasPrefix(server, cell) && len(server) > len(cell) && strings.ContainsRune("-+", rune(server[len(cell)]))
}

// stepDetect finds the CNI an existing cluster runs (installed mode): its
// workloads become what cni-ready waits for and whose pods must have run
// on the arch under test, as if the cell had applied them. A cluster that
// runs another CNI or another version than the cell's is a skipped cell,
// with what it does run.
var stepDetect = Step{Name: "cni-detect", Applies: func(c *cellRun) bool { return c.plan.installed() }, Run: func(ctx context.Context, c *cellRun) StepResult {
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	found, err := DetectCNI(dctx, c.client)
	if err != nil {
		return StepResult{Err: err, Infra: true}
	}
	var ev []matrix.Evidence
	for _, f := range found {
		ev = append(ev, matrix.Evidence{Check: "cni-detect", Source: "api", Target: f.Workload.String(), OK: true, Detail: f.String()})
	}
	cell := c.plan.Cell
	var mine []DetectedCNI
	for _, f := range found {
		if f.CNI == cell.CNI {
			mine = append(mine, f)
		}
	}
	switch {
	case len(found) == 0:
		return StepResult{Evidence: ev, Err: errors.New("no CNI found: no DaemonSet or Deployment mounts /etc/cni/net.d or /opt/cni/bin"), Infra: true}
	case len(mine) == 0:
		return StepResult{Evidence: ev, Skip: fmt.Sprintf("the cluster runs %s, not %s", describeDetected(found), cell.CNI)}
	}
	if v := mine[0].Version; v != "" && v != cell.CNIVersion {
		return StepResult{Evidence: ev, Skip: fmt.Sprintf("the cluster runs %s %s, the cell asks about %s", cell.CNI, v, cell.CNIVersion)}
	}
	c.result.Installed = describeDetected(mine)
	var objs []*unstructured.Unstructured
	for _, f := range mine {
		objs = append(objs, workloadObject(f.Workload))
	}
	c.applied = append(c.applied, objs)
	return StepResult{Evidence: ev}
}}

// DetectedCNI is a workload of the CNI an existing cluster runs.
type DetectedCNI struct {
	Workload install.Workload
	// CNI is the family by its images (calico, flannel, cilium, ...; other
	// when none is known), Version the tag of its main image.
	CNI, Version string
	Images       []string
	// Operator: deployed by an operator (tigera-operator), not a manifest.
	Operator bool
}

func (d DetectedCNI) String() string {
	how := "manifest"
	if d.Operator {
		how = "operator"
	}
	return fmt.Sprintf("%s %s (%s install): %s", d.CNI, cmp.Or(d.Version, "-"), how, strings.Join(d.Images, ", "))
}

func describeDetected(ds []DetectedCNI) string {
	var out []string
	for _, d := range ds {
		s := d.CNI
		if d.Version != "" {
			s += " " + d.Version
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return strings.Join(out, ", ")
}

// cniFamilies: an image path part that names the CNI it belongs to.
var cniFamilies = []struct{ part, cni string }{
	{"calico/", "calico"}, {"tigera/", "calico"}, {"flannel", "flannel"}, {"cilium", "cilium"},
	{"weave", "weave"}, {"antrea", "antrea"}, {"kube-ovn", "kube-ovn"},
}

// DetectCNI lists the workloads of the CNIs a cluster runs: DaemonSets
// whose pods mount the CNI's host directories (/etc/cni/net.d,
// /opt/cni/bin), and the Deployments of the same family beside them
// (calico-kube-controllers, typha). It needs only list access to
// DaemonSets and Deployments.
func DetectCNI(ctx context.Context, client kubernetes.Interface) ([]DetectedCNI, error) {
	dss, err := client.AppsV1().DaemonSets("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("detect the CNI: list DaemonSets: %w", err)
	}
	var out []DetectedCNI
	namespaces := map[string]string{} // namespace -> family found there
	for i := range dss.Items {
		ds := &dss.Items[i]
		if !mountsCNIDirs(ds.Spec.Template.Spec) {
			continue
		}
		d := detected("DaemonSet", ds.Namespace, ds.Name, ds.Spec.Template.Spec, ds.Labels)
		out = append(out, d)
		namespaces[ds.Namespace] = d.CNI
	}
	deps, err := client.AppsV1().Deployments("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("detect the CNI: list Deployments: %w", err)
	}
	for i := range deps.Items {
		dep := &deps.Items[i]
		fam, ok := namespaces[dep.Namespace]
		if !ok && dep.Name != "tigera-operator" {
			continue
		}
		d := detected("Deployment", dep.Namespace, dep.Name, dep.Spec.Template.Spec, dep.Labels)
		if d.CNI != fam && dep.Name != "tigera-operator" {
			continue // CoreDNS beside calico in kube-system: not the CNI's
		}
		out = append(out, d)
	}
	operated := slices.ContainsFunc(deps.Items, func(d appsv1.Deployment) bool { return d.Name == "tigera-operator" })
	for i := range out {
		out[i].Operator = operated && out[i].CNI == "calico"
	}
	// The main image's tag is the version: the DaemonSet's first.
	for i := range out {
		if out[i].Version == "" {
			continue
		}
		for j := range out {
			if out[j].CNI == out[i].CNI && out[j].Version == "" {
				out[j].Version = out[i].Version
			}
		}
	}
	return out, nil
}

func detected(kind, ns, name string, spec corev1.PodSpec, labels map[string]string) DetectedCNI {
	d := DetectedCNI{Workload: install.Workload{Kind: kind, Namespace: ns, Name: name}, CNI: "other"}
	for _, ct := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		d.Images = append(d.Images, ct.Image)
	}
	for _, ct := range spec.Containers {
		for _, f := range cniFamilies {
			if strings.Contains(ct.Image, f.part) {
				d.CNI = f.cni
				if kind == "DaemonSet" {
					d.Version = imageTag(ct.Image)
				}
				return d
			}
		}
	}
	return d
}

// imageTag is the tag of ref ("" when it has none or only a digest).
func imageTag(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return ""
	}
	return ref[i+1:]
}

func mountsCNIDirs(spec corev1.PodSpec) bool {
	for _, v := range spec.Volumes {
		if v.HostPath == nil {
			continue
		}
		switch strings.TrimSuffix(v.HostPath.Path, "/") {
		case "/etc/cni/net.d", "/opt/cni/bin", "/etc/cni":
			return true
		}
	}
	return false
}

func workloadObject(w install.Workload) *unstructured.Unstructured {
	o := &unstructured.Unstructured{}
	o.SetAPIVersion("apps/v1")
	o.SetKind(w.Kind)
	o.SetNamespace(w.Namespace)
	o.SetName(w.Name)
	return o
}

// refuseOtherCNI is install mode's guard: another CNI in the cluster makes
// the cell's verdict about two CNIs at once, and replacing it is the
// user's call (--replace-cni).
func (c *cellRun) refuseOtherCNI(ctx context.Context) error {
	if c.plan.scenario.Existing.ReplaceCNI {
		return nil
	}
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	found, err := DetectCNI(dctx, c.client)
	if err != nil {
		return err
	}
	if len(found) > 0 {
		return fmt.Errorf("the cluster already runs %s: install mode would put a second CNI beside it; remove it first or pass --replace-cni", describeDetected(found))
	}
	return nil
}

// uninstallExisting deletes what install mode applied to a cluster that is
// not cnimatrix's, and waits until it is gone.
func (c *cellRun) uninstallExisting(ctx context.Context) {
	if c.plan.installed() {
		return // never the cluster's own CNI
	}
	objs := appliedObjects(c.applied...)
	if len(objs) == 0 || c.cfg == nil {
		return
	}
	_ = c.infraPhase(PhaseUninstall, func() ([]matrix.Evidence, error) {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Minute)
		defer cancel()
		if err := install.Delete(uctx, c.cfg, objs); err != nil {
			return nil, err
		}
		if err := install.WaitDeleted(uctx, c.cfg, objs); err != nil {
			return nil, err
		}
		return []matrix.Evidence{{Check: PhaseUninstall, Target: c.cl.Name, OK: true, Detail: fmt.Sprintf("%d objects the run applied deleted", len(objs))}}, nil
	})
}

// CreateKindCluster makes a kind cluster of nodes amd64 nodes the ordinary
// way, outside any cell, with no CNI: nodes pull through the run's
// registry. It is the "existing" cluster of the e2e suite's own test of
// provider existing; DeleteKindCluster deletes it.
func (e *Engine) CreateKindCluster(ctx context.Context, name, k8s string, nodes int) (*cluster.Cluster, error) {
	img, err := e.NodeImage(ctx, k8s, scenario.HostArch())
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(e.opts.WorkDir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return e.kind.Create(ctx, cluster.Spec{
		Name: name, KubernetesVersion: k8s, NodeImage: img, PodSubnet: "10.244.0.0/16", ServiceSubnet: "10.96.0.0/16",
		Network: e.network, WorkDir: dir, Nodes: e.kind.Layout(scenario.HostArch(), nodes),
		Mirror: &cluster.Mirror{Endpoint: "http://" + e.registry.Addr(), Upstreams: Upstreams},
	})
}

// DeleteKindCluster deletes a cluster of CreateKindCluster.
func (e *Engine) DeleteKindCluster(ctx context.Context, name string) error {
	return deleteCluster(ctx, e.kind, name, filepath.Join(e.opts.WorkDir, name))
}

// ClusterNameFor is a name for a cluster of this run outside any cell.
func (e *Engine) ClusterNameFor(what string) string {
	return cluster.NamePrefix + what + "-" + e.runID
}
