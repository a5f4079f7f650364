package calico

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/cnimatrix/cnimatrix/internal/install"
	"github.com/cnimatrix/cnimatrix/internal/logx"
)

// The install methods of a Calico cell.
const (
	// InstallManifest applies calico.yaml (kube-system).
	InstallManifest = "manifest"
	// InstallOperator applies tigera-operator.yaml and an Installation; the
	// operator then deploys Calico into OperatorNamespace.
	InstallOperator = "operator"
)

// OperatorNamespace is where the operator deploys calico-node and
// calico-kube-controllers.
const OperatorNamespace = "calico-system"

const operatorGroup = "operator.tigera.io"

var tigeraStatusGVR = schema.GroupVersionResource{Group: operatorGroup, Version: "v1", Resource: "tigerastatuses"}

// ConfigureFor applies o to a parsed install: calico.yaml's edits for a
// manifest install, the Installation's for an operator install. It returns
// the objects to apply (an operator install without an Installation gets
// one).
func ConfigureFor(objs []*Object, o Options) ([]*Object, error) {
	if o.Install == InstallOperator {
		return ConfigureOperator(objs, o)
	}
	if isOperatorInstall(objs) {
		return nil, errors.New("this is an operator install (tigera-operator.yaml): set cni.calico.install: operator")
	}
	return objs, Configure(objs, o)
}

// isOperatorInstall reports whether objs hold the operator's Deployment or
// its resources, rather than calico.yaml's calico-node.
func isOperatorInstall(objs []*Object) bool {
	for _, o := range objs {
		if o.GroupVersionKind().Group == operatorGroup || (o.GetKind() == "Deployment" && o.GetName() == "tigera-operator") {
			return true
		}
	}
	return false
}

// ConfigureOperator points the operator install's Installation at the
// cluster: the first IPv4 pool gets the cluster's podSubnet and the asked
// encapsulation, calicoNetwork.mtu the MTU, spec.registry the registry.
// Fields the harness does not set (blockSize, natOutgoing, ...) stay as
// custom-resources.yaml has them; without an Installation in objs one is
// rendered (Installation) with the operator's default encapsulation,
// VXLANCrossSubnet, unless o asks for another.
func ConfigureOperator(objs []*Object, o Options) ([]*Object, error) {
	if !isOperatorInstall(objs) {
		return nil, errors.New("cni.calico.install operator: the manifest has no tigera-operator Deployment (is it calico.yaml? then install: manifest)")
	}
	var inst *Object
	for _, obj := range objs {
		if obj.GroupVersionKind().Group == operatorGroup && obj.GetKind() == "Installation" {
			if inst != nil {
				return nil, fmt.Errorf("two Installations (%s, %s): the operator reconciles one, named default", inst.GetName(), obj.GetName())
			}
			inst = obj
		}
	}
	encap := o.Encapsulation
	if encap == "" && inst != nil {
		if pool, ok := firstPool(inst); ok {
			if e, _, _ := unstructured.NestedString(pool, "encapsulation"); e != "" {
				encap = Encapsulation(e)
			}
		}
	}
	if encap == "" {
		encap = VXLANCrossSubnet
	}
	cidr := o.PodCIDR
	if cidr == "" && inst != nil {
		if pool, ok := firstPool(inst); ok {
			cidr, _, _ = unstructured.NestedString(pool, "cidr")
		}
	}
	// Rendering validates the options as a whole; its fields are what an
	// Installation of the file gets.
	want, err := Installation(InstallationOptions{CIDR: cidr, Encapsulation: encap, MTU: o.MTU, Registry: o.Registry, ImagePath: o.ImagePath})
	if err != nil {
		return nil, err
	}
	if inst == nil {
		return append(objs, want), nil
	}
	wantPool, _ := firstPool(want)
	pools, _, _ := unstructured.NestedSlice(inst.Object, "spec", "calicoNetwork", "ipPools")
	if len(pools) == 0 {
		pools = []any{wantPool}
	} else {
		first, ok := pools[0].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("installation %s: spec.calicoNetwork.ipPools[0] is not an object", inst.GetName())
		}
		first["cidr"] = wantPool["cidr"]
		first["encapsulation"] = wantPool["encapsulation"]
	}
	if err := unstructured.SetNestedSlice(inst.Object, pools, "spec", "calicoNetwork", "ipPools"); err != nil {
		return nil, fmt.Errorf("installation %s: %w", inst.GetName(), err)
	}
	if o.MTU != 0 {
		if err := unstructured.SetNestedField(inst.Object, int64(o.MTU), "spec", "calicoNetwork", "mtu"); err != nil {
			return nil, fmt.Errorf("installation %s: %w", inst.GetName(), err)
		}
	}
	if r, ok, _ := unstructured.NestedString(want.Object, "spec", "registry"); ok {
		if err := unstructured.SetNestedField(inst.Object, r, "spec", "registry"); err != nil {
			return nil, fmt.Errorf("installation %s: %w", inst.GetName(), err)
		}
	}
	return objs, nil
}

func firstPool(inst *Object) (map[string]any, bool) {
	pools, _, _ := unstructured.NestedSlice(inst.Object, "spec", "calicoNetwork", "ipPools")
	if len(pools) == 0 {
		return nil, false
	}
	p, ok := pools[0].(map[string]any)
	return p, ok
}

// OperatorWorkloads are what the operator deploys and a cell waits for.
func OperatorWorkloads() []install.Workload {
	return []install.Workload{
		{Kind: "DaemonSet", Namespace: OperatorNamespace, Name: "calico-node"},
		{Kind: "Deployment", Namespace: OperatorNamespace, Name: "calico-kube-controllers"},
	}
}

// OperatorError is an operator install that did not become ready: what its
// TigeraStatus said last and, once it was available, the workloads' report.
type OperatorError struct {
	Status    string // "calico: Available=False Progressing=True Degraded=True (reason: message)"
	Workloads *install.NotReadyError
	Err       error
}

func (e *OperatorError) Error() string {
	if e.Workloads != nil {
		return fmt.Sprintf("operator install: TigeraStatus %s; %v", e.Status, e.Workloads)
	}
	return fmt.Sprintf("operator install: TigeraStatus %s: %v", e.Status, e.Err)
}

func (e *OperatorError) Unwrap() error { return e.Err }

// WaitOperator waits until the operator reports TigeraStatus "calico"
// Available and then until calico-node and calico-kube-controllers are
// ready (install.WaitWorkloads), until ctx ends.
func WaitOperator(ctx context.Context, dyn dynamic.Interface, client kubernetes.Interface, log *logx.Logger) error {
	if log == nil {
		log = logx.Discard()
	}
	status := "not reported yet"
	err := install.Poll(ctx, func(ctx context.Context) (bool, error) {
		ts, err := dyn.Resource(tigeraStatusGVR).Get(ctx, "calico", metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			status = "calico: not reported yet (the operator has not reconciled the Installation)"
			return false, nil
		case err != nil:
			status = "calico: " + err.Error()
			return false, nil
		}
		var available bool
		status, available = describeStatus(ts)
		log.Debugf("TigeraStatus %s", status)
		return available, nil
	})
	if err != nil {
		return &OperatorError{Status: status, Err: err}
	}
	log.Infof("TigeraStatus %s", status)
	if err := install.WaitWorkloads(ctx, client, OperatorWorkloads(), log); err != nil {
		var nr *install.NotReadyError
		if errors.As(err, &nr) {
			return &OperatorError{Status: status, Workloads: nr, Err: err}
		}
		return &OperatorError{Status: status, Err: err}
	}
	return nil
}

// describeStatus reads a TigeraStatus's conditions as one line and whether
// it says Available.
func describeStatus(ts *unstructured.Unstructured) (string, bool) {
	conds, _, _ := unstructured.NestedSlice(ts.Object, "status", "conditions")
	var parts, why []string
	available := false
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok {
			continue
		}
		t, _ := m["type"].(string)
		st, _ := m["status"].(string)
		parts = append(parts, t+"="+st)
		if t == "Available" && st == "True" {
			available = true
		}
		if st == "True" && t == "Degraded" {
			reason, _ := m["reason"].(string)
			msg, _ := m["message"].(string)
			why = append(why, strings.TrimSpace(reason+": "+msg))
		}
	}
	sort.Strings(parts)
	s := ts.GetName() + ": " + strings.Join(parts, " ")
	if len(parts) == 0 {
		s = ts.GetName() + ": no conditions yet"
	}
	if len(why) > 0 {
		s += " (" + strings.Join(why, "; ") + ")"
	}
	return s, available
}
