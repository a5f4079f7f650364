package install

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
)

// Delete removes objs in the reverse of Apply's order (workloads, then
// namespaces, then CRDs) with foreground propagation, so that owned pods go
// before their owners are reported gone. Objects or kinds that no longer
// exist are not errors. It keeps going past failures and returns them all;
// it does not wait for finalizers to finish.
func Delete(ctx context.Context, cfg *rest.Config, objs []*unstructured.Unstructured) error {
	a, err := newApplier(cfg, ApplyOptions{})
	if err != nil {
		return err
	}
	return a.delete(ctx, objs)
}

// WaitDeleted waits until none of objs exists any more (a kind that is no
// longer served counts as gone) and names those still there when ctx ends.
func WaitDeleted(ctx context.Context, cfg *rest.Config, objs []*unstructured.Unstructured) error {
	a, err := newApplier(cfg, ApplyOptions{})
	if err != nil {
		return err
	}
	var left []string
	err = Poll(ctx, func(ctx context.Context) (bool, error) {
		// CRDs going away change what is served.
		a.mapper.Reset()
		left = left[:0]
		for _, o := range objs {
			ri, obj, err := a.resource(o)
			if err == nil {
				_, err = ri.Get(ctx, obj.GetName(), metav1.GetOptions{})
			}
			if err == nil || !(apierrors.IsNotFound(err) || meta.IsNoMatchError(err)) {
				left = append(left, Ref(o))
			}
		}
		return len(left) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("still there: %s: %w", strings.Join(left, ", "), err)
	}
	return nil
}

// deleteOrder is the reverse of applyOrder.
func deleteOrder(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	crds, namespaces, rest := applyOrder(objs)
	out := make([]*unstructured.Unstructured, 0, len(objs))
	for _, g := range [][]*unstructured.Unstructured{rest, namespaces, crds} {
		g = slices.Clone(g)
		slices.Reverse(g)
		out = append(out, g...)
	}
	return out
}

func (a *applier) delete(ctx context.Context, objs []*unstructured.Unstructured) error {
	fg := metav1.DeletePropagationForeground
	var errs []error
	for _, o := range deleteOrder(objs) {
		ri, obj, err := a.resource(o)
		if err == nil {
			err = ri.Delete(ctx, obj.GetName(), metav1.DeleteOptions{PropagationPolicy: &fg})
		}
		if err == nil || apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			continue
		}
		errs = append(errs, fmt.Errorf("delete %s: %w", Ref(o), err))
		var ne net.Error
		if ctx.Err() != nil || errors.As(err, &ne) {
			// The API server is unreachable: every other delete would fail
			// the same way.
			break
		}
	}
	return errors.Join(errs...)
}
