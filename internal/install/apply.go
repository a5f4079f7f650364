package install

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/cnimatrix/cnimatrix/internal/logx"
)

// DefaultFieldManager owns the fields cnimatrix applies.
const DefaultFieldManager = "cnimatrix"

// defaultWait bounds a wait whose context has no deadline, so a caller that
// forgot one gets an error instead of a hang.
const defaultWait = 5 * time.Minute

// ApplyOptions configure Apply.
type ApplyOptions struct {
	FieldManager string // default DefaultFieldManager
	Log          *logx.Logger
}

var crdGK = schema.GroupKind{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// Apply server-side-applies objs, forcing conflicts (the manifest is the
// source of truth for the fields it names). CRDs go first and Apply waits
// until each is Established, so that custom resources later in the same
// manifest have a REST mapping; namespaces go next, then everything else in
// manifest order. Namespaced objects without a namespace go to "default".
func Apply(ctx context.Context, cfg *rest.Config, objs []*unstructured.Unstructured, opts ApplyOptions) error {
	if opts.FieldManager == "" {
		opts.FieldManager = DefaultFieldManager
	}
	if opts.Log == nil {
		opts.Log = logx.Discard()
	}
	a, err := newApplier(cfg, opts)
	if err != nil {
		return err
	}
	return a.apply(ctx, objs)
}

// newApplier is the clients Apply, Delete and WaitDeleted share: dynamic,
// with a REST mapper over cached discovery.
func newApplier(cfg *rest.Config, opts ApplyOptions) (*applier, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("discovery client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	return &applier{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc)), opts: opts}, nil
}

// resettableMapper is a RESTMapper whose discovery cache can be dropped once
// new CRDs are served.
type resettableMapper interface {
	meta.RESTMapper
	Reset()
}

type applier struct {
	dyn    dynamic.Interface
	mapper resettableMapper
	opts   ApplyOptions
}

// applyOrder splits objs into the three apply phases, keeping manifest order
// within each.
func applyOrder(objs []*unstructured.Unstructured) (crds, namespaces, rest []*unstructured.Unstructured) {
	for _, o := range objs {
		gk := o.GroupVersionKind().GroupKind()
		switch {
		case gk == crdGK:
			crds = append(crds, o)
		case gk.Group == "" && gk.Kind == "Namespace":
			namespaces = append(namespaces, o)
		default:
			rest = append(rest, o)
		}
	}
	return crds, namespaces, rest
}

func (a *applier) apply(ctx context.Context, objs []*unstructured.Unstructured) error {
	t0 := time.Now()
	crds, namespaces, rest := applyOrder(objs)
	for _, o := range crds {
		if err := a.applyOne(ctx, o); err != nil {
			return err
		}
	}
	for _, o := range crds {
		if err := a.waitEstablished(ctx, o.GetName()); err != nil {
			return err
		}
	}
	if len(crds) > 0 {
		// The mapper cached discovery before the new kinds were served.
		a.mapper.Reset()
		a.opts.Log.Debugf("%d CRDs established after %s", len(crds), time.Since(t0).Truncate(time.Millisecond))
	}
	for _, group := range [][]*unstructured.Unstructured{namespaces, rest} {
		for _, o := range group {
			if err := a.applyOne(ctx, o); err != nil {
				return err
			}
		}
	}
	a.opts.Log.Infof("applied %d objects (%d CRDs, %d namespaces) in %s", len(objs), len(crds), len(namespaces), time.Since(t0).Truncate(time.Millisecond))
	return nil
}

// backoff is how every wait in this package polls: quick at first, because
// most things become ready within seconds, then every 5 s.
func backoff() wait.Backoff {
	return wait.Backoff{Duration: 250 * time.Millisecond, Factor: 1.6, Jitter: 0.1, Steps: 12, Cap: 5 * time.Second}
}

// Poll runs cond until it returns true or an error, or ctx ends, spaced
// by backoff: every wait of the harness on the API server polls this way.
// A context without a deadline gets defaultWait.
func Poll(ctx context.Context, cond wait.ConditionWithContextFunc) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultWait)
		defer cancel()
	}
	return backoff().DelayFunc().Until(ctx, true, true, cond)
}

// retriable reports errors that a later attempt can cure: the API server
// being busy, a webhook whose pod is still starting, a kind whose CRD was just
// established but is not in discovery yet.
func retriable(err error) bool {
	if meta.IsNoMatchError(err) {
		return true
	}
	if apierrors.IsServiceUnavailable(err) || apierrors.IsTooManyRequests(err) || apierrors.IsServerTimeout(err) ||
		apierrors.IsTimeout(err) || apierrors.IsInternalError(err) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// resource resolves the client for o, namespacing it as its scope requires.
// It returns the object to send (a copy when the namespace was adjusted).
func (a *applier) resource(o *unstructured.Unstructured) (dynamic.ResourceInterface, *unstructured.Unstructured, error) {
	if o.GetManagedFields() != nil || o.GetResourceVersion() != "" || o.GetUID() != "" {
		// Manifests saved with `kubectl get -o yaml` carry server state that
		// server-side apply rejects (managedFields) or treats as a
		// precondition that cannot hold in a new cluster (resourceVersion, uid).
		o = o.DeepCopy()
		o.SetManagedFields(nil)
		o.SetResourceVersion("")
		o.SetUID("")
	}
	gvk := o.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, nil, err
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		if o.GetNamespace() == "" {
			o = o.DeepCopy()
			o.SetNamespace("default")
		}
		return a.dyn.Resource(m.Resource).Namespace(o.GetNamespace()), o, nil
	}
	if o.GetNamespace() != "" {
		// Manifests sometimes set a namespace on cluster-scoped objects;
		// the API server would reject the mismatch.
		o = o.DeepCopy()
		o.SetNamespace("")
	}
	return a.dyn.Resource(m.Resource), o, nil
}

func (a *applier) applyOne(ctx context.Context, o *unstructured.Unstructured) error {
	var last error
	attempts := 0
	err := Poll(ctx, func(ctx context.Context) (bool, error) {
		attempts++
		ri, obj, err := a.resource(o)
		if err == nil {
			_, err = ri.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: a.opts.FieldManager, Force: true})
		}
		if err == nil {
			return true, nil
		}
		if !retriable(err) {
			return false, err
		}
		if meta.IsNoMatchError(err) {
			a.mapper.Reset()
		}
		last = err
		a.opts.Log.Debugf("apply %s: attempt %d: %v (retrying)", Ref(o), attempts, err)
		return false, nil
	})
	if err != nil {
		if last != nil && wait.Interrupted(err) {
			return fmt.Errorf("apply %s: gave up after %d attempts (%w): %w", Ref(o), attempts, err, last)
		}
		return fmt.Errorf("apply %s: %w", Ref(o), err)
	}
	a.opts.Log.Debugf("applied %s", Ref(o))
	return nil
}

// waitEstablished waits until the CRD's Established condition is True. A
// NamesAccepted=False condition cannot cure itself and ends the wait at once.
func (a *applier) waitEstablished(ctx context.Context, name string) error {
	var state string
	err := Poll(ctx, func(ctx context.Context) (bool, error) {
		crd, err := a.dyn.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			if retriable(err) || apierrors.IsNotFound(err) {
				state = err.Error()
				return false, nil
			}
			return false, err
		}
		conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
		state = "no conditions yet"
		for _, c := range conds {
			cm, _ := c.(map[string]any)
			typ, _ := cm["type"].(string)
			status, _ := cm["status"].(string)
			msg, _ := cm["message"].(string)
			switch {
			case typ == "Established" && status == "True":
				return true, nil
			case typ == "NamesAccepted" && status == "False":
				return false, fmt.Errorf("names not accepted: %s", msg)
			case typ == "Established":
				state = fmt.Sprintf("Established=%s: %s", status, msg)
			}
		}
		return false, nil
	})
	if err != nil {
		if wait.Interrupted(err) {
			return fmt.Errorf("CRD %s not established (%s): %w", name, state, err)
		}
		return fmt.Errorf("CRD %s: %w", name, err)
	}
	return nil
}
