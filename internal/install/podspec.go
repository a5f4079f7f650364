package install

import "k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

// podSpecPaths are where workload kinds keep their pod spec.
var podSpecPaths = map[string][]string{
	"Pod":                   {"spec"},
	"DaemonSet":             {"spec", "template", "spec"},
	"Deployment":            {"spec", "template", "spec"},
	"StatefulSet":           {"spec", "template", "spec"},
	"ReplicaSet":            {"spec", "template", "spec"},
	"ReplicationController": {"spec", "template", "spec"},
	"Job":                   {"spec", "template", "spec"},
	"CronJob":               {"spec", "jobTemplate", "spec", "template", "spec"},
}

// PodSpecPath is where objects of kind keep their pod spec, or nil for a
// kind that runs no pods.
func PodSpecPath(kind string) []string { return podSpecPaths[kind] }

// Containers returns the init containers and containers of a workload, in
// that order, as the maps inside the object: editing them edits o.
func Containers(o *unstructured.Unstructured) []map[string]any {
	path := PodSpecPath(o.GetKind())
	if path == nil {
		return nil
	}
	spec, ok, _ := unstructured.NestedFieldNoCopy(o.Object, path...)
	if !ok {
		return nil
	}
	sm, ok := spec.(map[string]any)
	if !ok {
		return nil
	}
	var out []map[string]any
	for _, key := range []string{"initContainers", "containers"} {
		list, _ := sm[key].([]any)
		for _, c := range list {
			if cm, ok := c.(map[string]any); ok {
				out = append(out, cm)
			}
		}
	}
	return out
}
