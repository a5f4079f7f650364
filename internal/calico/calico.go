// Package calico edits parsed Calico manifests (calico.yaml) the way the
// Calico docs tell a platform engineer to edit them by hand: image registry,
// pod CIDR, encapsulation, MTU. It also renders the operator's Installation.
// Every edit checks that the manifest can take it and says why not, before
// anything is applied to a cluster.
package calico

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/cnimatrix/cnimatrix/internal/install"
)

// Object is one object of a parsed manifest (install.ParseManifest).
type Object = unstructured.Unstructured

// Names of the objects calico.yaml has had since v3.1.
const (
	NodeDaemonSet = "calico-node"
	NodeContainer = "calico-node"
	ConfigMapName = "calico-config"
)

// nodeContainer finds the calico-node container of the calico-node
// DaemonSet.
func nodeContainer(objs []*Object) (map[string]any, error) {
	for _, o := range objs {
		if o.GetKind() != "DaemonSet" || o.GetName() != NodeDaemonSet {
			continue
		}
		for _, c := range install.Containers(o) {
			if c["name"] == NodeContainer {
				return c, nil
			}
		}
		return nil, fmt.Errorf("DaemonSet %s has no container %q", NodeDaemonSet, NodeContainer)
	}
	return nil, fmt.Errorf("no DaemonSet %s in the manifest: not a Calico calico.yaml", NodeDaemonSet)
}

// configData returns the data of the calico-config ConfigMap, creating the
// data map if the ConfigMap has none.
func configData(objs []*Object) (map[string]any, error) {
	for _, o := range objs {
		if o.GetKind() != "ConfigMap" || o.GetName() != ConfigMapName {
			continue
		}
		d, ok := o.Object["data"].(map[string]any)
		if !ok {
			d = map[string]any{}
			o.Object["data"] = d
		}
		return d, nil
	}
	return nil, fmt.Errorf("no ConfigMap %s in the manifest: not a Calico calico.yaml", ConfigMapName)
}

// env returns the env entry called name of container c.
func env(c map[string]any, name string) (map[string]any, bool) {
	list, _ := c["env"].([]any)
	for _, e := range list {
		if em, ok := e.(map[string]any); ok && em["name"] == name {
			return em, true
		}
	}
	return nil, false
}

// setEnv sets name to a literal value, replacing a valueFrom, or appends it.
func setEnv(c map[string]any, name, value string) {
	if e, ok := env(c, name); ok {
		delete(e, "valueFrom")
		e["value"] = value
		return
	}
	list, _ := c["env"].([]any)
	c["env"] = append(list, map[string]any{"name": name, "value": value})
}
