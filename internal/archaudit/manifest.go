package archaudit

import (
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/cnimatrix/cnimatrix/internal/install"
)

// ManifestImages lists every image of every container and init container of
// every workload in a multi-document YAML manifest, in file order. Errors
// name the document (1-based) for YAML that does not parse, and the
// workload and container for an image reference that does not.
func ManifestImages(data []byte) ([]ImageRef, error) {
	objs, err := install.ParseManifest(data)
	if err != nil {
		return nil, err
	}
	return ObjectImages(objs)
}

// ObjectImages is ManifestImages for objects already parsed (as
// install.ParseManifest returns them). Objects that run no pods are skipped.
func ObjectImages(objs []*unstructured.Unstructured) ([]ImageRef, error) {
	var out []ImageRef
	for _, o := range objs {
		p := install.PodSpecPath(o.GetKind())
		if p == nil {
			continue
		}
		workload := o.GetKind() + " " + o.GetName()
		if ns := o.GetNamespace(); ns != "" {
			workload = o.GetKind() + " " + ns + "/" + o.GetName()
		}
		spec, found, err := unstructured.NestedMap(o.Object, p...)
		if err != nil {
			return nil, fmt.Errorf("%s: pod spec: %w", workload, err)
		}
		if !found {
			continue
		}
		for _, field := range []string{"initContainers", "containers"} {
			cs, _, err := unstructured.NestedSlice(spec, field)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", workload, field, err)
			}
			for i, c := range cs {
				cm, ok := c.(map[string]any)
				if !ok {
					return nil, fmt.Errorf("%s: %s[%d] is not a mapping", workload, field, i)
				}
				ref := ImageRef{Workload: workload, InitContainer: field == "initContainers"}
				ref.Container, _ = cm["name"].(string)
				img, _ := cm["image"].(string)
				what := fmt.Sprintf("%s: container %q", workload, ref.Container)
				if ref.InitContainer {
					what = fmt.Sprintf("%s: init container %q", workload, ref.Container)
				}
				if img == "" {
					return nil, fmt.Errorf("%s has no image", what)
				}
				if _, err := name.ParseReference(img); err != nil {
					return nil, fmt.Errorf("%s: image %q is not a valid image reference: %w", what, img, err)
				}
				ref.Ref = img
				if cmd, ok := cm["command"].([]any); ok {
					for _, a := range cmd {
						s, ok := a.(string)
						if !ok {
							return nil, fmt.Errorf("%s: command holds a %T, not a string", what, a)
						}
						ref.Command = append(ref.Command, s)
					}
				}
				out = append(out, ref)
			}
		}
	}
	return out, nil
}
