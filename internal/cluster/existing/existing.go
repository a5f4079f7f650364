// Package existing is the provider of clusters cnimatrix did not create: a
// kubeconfig (and context) the user gives. Create only connects and reads
// the nodes; Delete deletes nothing, because nothing of the cluster is
// cnimatrix's. Its nodes cannot run commands (no Exec): what cnimatrix
// learns about them comes from the API.
package existing

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
	"github.com/cnimatrix/cnimatrix/internal/logx"
)

// Name is the provider's name as scenarios spell it.
const Name = "existing"

// Provider connects to the cluster of one kubeconfig and context.
type Provider struct {
	Kubeconfig string
	Context    string
}

// New returns the provider of the cluster that kubeconfig's context
// (its current context when "") points at.
func New(kubeconfig, context string) *Provider {
	return &Provider{Kubeconfig: kubeconfig, Context: context}
}

func (p *Provider) Name() string { return Name }

// Layout is unknown before connecting: the cluster's nodes are what they are.
func (p *Provider) Layout(arch string, count int) []cluster.NodeSpec { return nil }

func (p *Provider) NodeKind(cluster.NodeSpec) string { return "node of an existing cluster" }

// Where says which cluster this is, for plans and logs.
func (p *Provider) Where() string {
	ctx := p.Context
	if ctx == "" {
		ctx = "its current context"
	} else {
		ctx = "context " + ctx
	}
	return fmt.Sprintf("existing cluster of %s (%s)", p.Kubeconfig, ctx)
}

// load returns the kubeconfig minified to the chosen context (only
// its cluster, user and credentials), and the context's name.
func (p *Provider) load() ([]byte, string, error) {
	if p.Kubeconfig == "" {
		return nil, "", fmt.Errorf("provider existing: no kubeconfig (give existing.kubeconfig in the scenario or cnimatrix run --kubeconfig FILE)")
	}
	raw, err := clientcmd.LoadFromFile(p.Kubeconfig)
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig %s: %w", p.Kubeconfig, err)
	}
	name := p.Context
	if name == "" {
		name = raw.CurrentContext
	}
	if _, ok := raw.Contexts[name]; !ok || name == "" {
		var known []string
		for n := range raw.Contexts {
			known = append(known, n)
		}
		return nil, "", fmt.Errorf("kubeconfig %s: no context %q (contexts: %s)", p.Kubeconfig, name, strings.Join(known, ", "))
	}
	raw.CurrentContext = name
	if err := clientcmdapi.MinifyConfig(raw); err != nil {
		return nil, "", fmt.Errorf("kubeconfig %s: %w", p.Kubeconfig, err)
	}
	if err := clientcmdapi.FlattenConfig(raw); err != nil {
		return nil, "", fmt.Errorf("kubeconfig %s: %w", p.Kubeconfig, err)
	}
	b, err := clientcmd.Write(*raw)
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig %s: %w", p.Kubeconfig, err)
	}
	return b, name, nil
}

// Create connects to the cluster and reads its nodes (name, role, arch,
// internal address). It fails when the API server does not answer or the
// kubeconfig may not list nodes.
func (p *Provider) Create(ctx context.Context, spec cluster.Spec) (*cluster.Cluster, error) {
	cl, cs, err := p.connect()
	if err != nil {
		return nil, err
	}
	list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("%s: list nodes (cnimatrix needs to read nodes; see the ClusterRole in docs/existing-cluster.md): %w", p.Where(), err)
	}
	for _, n := range list.Items {
		cl.Nodes = append(cl.Nodes, node(&n))
	}
	if len(cl.Nodes) == 0 {
		return nil, fmt.Errorf("%s has no nodes", p.Where())
	}
	return cl, nil
}

// connect loads the kubeconfig's context and makes a client for it; the
// Cluster has no nodes yet.
func (p *Provider) connect() (*cluster.Cluster, kubernetes.Interface, error) {
	kc, ctxName, err := p.load()
	if err != nil {
		return nil, nil, err
	}
	cl := &cluster.Cluster{Name: clusterName(kc, ctxName), Provider: Name, Kubeconfig: kc}
	cfg, err := cl.RESTConfig()
	if err != nil {
		return nil, nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	return cl, cs, nil
}

// Delete deletes nothing: the cluster is not cnimatrix's. What a run put
// in it is removed by the run (and by cnimatrix gc --kubeconfig).
func (p *Provider) Delete(ctx context.Context, name string) error { return nil }

// List lists nothing: no cluster of this provider was created by cnimatrix.
func (p *Provider) List(ctx context.Context) ([]string, error) { return nil, nil }

func node(n *corev1.Node) cluster.Node {
	out := cluster.Node{Name: n.Name, Role: cluster.Worker, Arch: n.Labels[corev1.LabelArchStable]}
	if _, ok := n.Labels["node-role.kubernetes.io/control-plane"]; ok {
		out.Role = cluster.ControlPlane
	}
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP && out.InternalIP == "" {
			out.InternalIP = a.Address
		}
	}
	return out
}

// clusterName names the cluster in the matrix: its context and API host.
func clusterName(kubeconfig []byte, ctxName string) string {
	cfg, err := clientcmd.Load(kubeconfig)
	if err != nil {
		return ctxName
	}
	c, ok := cfg.Contexts[ctxName]
	if !ok {
		return ctxName
	}
	if cl, ok := cfg.Clusters[c.Cluster]; ok {
		if u, err := url.Parse(cl.Server); err == nil && u.Host != "" {
			return ctxName + "@" + u.Host
		}
	}
	return ctxName
}

// GC removes what runs of cnimatrix left in the cluster of kubeconfig: the
// checks' namespace (a run with --keep, or one that was killed), or, in a
// namespace the user provided, what the checks made in it. A namespace of
// a run in progress on this host is left alone unless force.
func GC(ctx context.Context, log *logx.Logger, kubeconfig, context string, force bool) error {
	p := New(kubeconfig, context)
	_, cs, err := p.connect()
	if err != nil {
		return err
	}
	nss, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: cluster.Label + "=checks"})
	if err != nil {
		return fmt.Errorf("%s: list cnimatrix's namespaces: %w", p.Where(), err)
	}
	var errs []error
	for _, ns := range nss.Items {
		if owner := ns.Annotations[cluster.OwnerAnnotation]; owner != "" && !force && cluster.RunLive(owner) {
			log.Infof("left namespace %s: run %s is in progress (--force deletes it)", ns.Name, owner)
			continue
		}
		if err := cs.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete namespace %s: %w", ns.Name, err))
			continue
		}
		log.Infof("deleted namespace %s", ns.Name)
	}
	return errors.Join(errs...)
}
