package calico

import (
	"fmt"
	"strings"

	"github.com/cnimatrix/cnimatrix/internal/install"
)

// Images lists every container and init container image of the manifest's
// workloads, each once, in manifest order.
func Images(objs []*Object) []string {
	var out []string
	seen := map[string]bool{}
	for _, o := range objs {
		for _, c := range install.Containers(o) {
			img, _ := c["image"].(string)
			if img != "" && !seen[img] {
				seen[img] = true
				out = append(out, img)
			}
		}
	}
	return out
}

// ImageRef is an image reference split the way a container runtime reads it.
type ImageRef struct {
	Registry string // "docker.io" when the reference names none
	Path     string // repository path in the registry, e.g. calico/node
	Suffix   string // ":tag", "@digest" or both, as written
}

func (r ImageRef) String() string { return r.Registry + "/" + r.Path + r.Suffix }

// ParseImage splits ref. The first path component is a registry only when
// it looks like a host (has a dot or a port, or is localhost), as in
// Docker's reference grammar; "calico/node:v3.28.0" is docker.io's.
func ParseImage(ref string) (ImageRef, error) {
	if ref == "" || strings.ContainsAny(ref, " \t\n") {
		return ImageRef{}, fmt.Errorf("image %q: not an image reference", ref)
	}
	name, suffix := ref, ""
	if i := strings.Index(name, "@"); i >= 0 {
		name, suffix = name[:i], name[i:]
	}
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name, suffix = name[:i], name[i:]+suffix
	}
	r := ImageRef{Registry: "docker.io", Path: name, Suffix: suffix}
	if first, rest, ok := strings.Cut(name, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		r.Registry, r.Path = first, rest
	}
	if r.Registry == "index.docker.io" {
		r.Registry = "docker.io"
	}
	if r.Registry == "docker.io" && !strings.Contains(r.Path, "/") {
		r.Path = "library/" + r.Path
	}
	if r.Path == "" || strings.HasSuffix(r.Path, "/") {
		return ImageRef{}, fmt.Errorf("image %q: no repository", ref)
	}
	return r, nil
}

// IsCalicoImage reports whether the image is one Calico publishes (the
// calico and tigera organisations), as opposed to e.g. coreos/etcd in the
// v3.1-v3.5 etcd manifests, which exists on quay.io only.
func IsCalicoImage(r ImageRef) bool {
	return strings.HasPrefix(r.Path, "calico/") || strings.HasPrefix(r.Path, "tigera/")
}

// Scope says which images SetRegistry rewrites.
type Scope int

const (
	// CalicoImages: switch Calico's own images between docker.io and
	// quay.io, the matrix's registry columns.
	CalicoImages Scope = iota
	// AllImages: every image, for an air-gapped mirror that holds them all.
	AllImages
)

// SetRegistry points images at registry: "docker.io", "quay.io", or a
// mirror "host[:port][/prefix]". Repository paths are kept, so
// calico/node:v3.28.0 becomes quay.io/calico/node:v3.28.0 or
// mirror.local:5000/calico/node:v3.28.0. It returns how many container
// entries changed.
func SetRegistry(objs []*Object, registry string, scope Scope) (int, error) {
	registry = strings.TrimSuffix(registry, "/")
	if registry == "" || strings.Contains(registry, "://") || strings.ContainsAny(registry, " \t@") {
		return 0, fmt.Errorf("registry %q: want a host like quay.io or mirror.local:5000, optionally with a path", registry)
	}
	n := 0
	for _, o := range objs {
		for _, c := range install.Containers(o) {
			img, _ := c["image"].(string)
			if img == "" {
				continue
			}
			r, err := ParseImage(img)
			if err != nil {
				return n, fmt.Errorf("%s %s: %w", o.GetKind(), o.GetName(), err)
			}
			if scope == CalicoImages && !IsCalicoImage(r) {
				continue
			}
			r.Registry = registry
			if s := r.String(); s != img {
				c["image"] = s
				n++
			}
		}
	}
	return n, nil
}
