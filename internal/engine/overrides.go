package engine

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// podSpecPaths are where workload kinds keep their pod spec.
var podSpecPaths = map[string][]string{
	"Pod":         {"spec"},
	"DaemonSet":   {"spec", "template", "spec"},
	"Deployment":  {"spec", "template", "spec"},
	"StatefulSet": {"spec", "template", "spec"},
	"ReplicaSet":  {"spec", "template", "spec"},
	"Job":         {"spec", "template", "spec"},
	"CronJob":     {"spec", "jobTemplate", "spec", "template", "spec"},
}

// OverrideImages replaces the images of every container and init container
// in objs according to overrides (image -> replacement) and returns how many
// it replaced.
func OverrideImages(objs []*unstructured.Unstructured, overrides map[string]string) int {
	if len(overrides) == 0 {
		return 0
	}
	n := 0
	for _, o := range objs {
		path, ok := podSpecPaths[o.GetKind()]
		if !ok {
			continue
		}
		for _, field := range []string{"initContainers", "containers"} {
			cs, found, err := unstructured.NestedSlice(o.Object, append(append([]string{}, path...), field)...)
			if err != nil || !found {
				continue
			}
			changed := false
			for i := range cs {
				c, ok := cs[i].(map[string]any)
				if !ok {
					continue
				}
				img, _ := c["image"].(string)
				if to, ok := overrides[img]; ok {
					c["image"] = to
					changed = true
					n++
				}
			}
			if changed {
				_ = unstructured.SetNestedSlice(o.Object, cs, append(append([]string{}, path...), field)...)
			}
		}
	}
	return n
}
