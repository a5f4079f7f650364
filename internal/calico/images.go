package calico

import (
	"fmt"
	"regexp"
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
// mirror.local:5000/calico/node:v3.28.0 (as the operator joins its
// Installation's registry and image path; SetImagePath replaces the
// calico/ part). It returns how many container entries changed.
func SetRegistry(objs []*Object, registry string, scope Scope) (int, error) {
	registry, err := CheckRegistry(registry)
	if err != nil {
		return 0, err
	}
	return rewriteImages(objs, scope, func(r *ImageRef) { r.Registry = registry })
}

// CheckRegistry returns registry without a trailing slash, or why a
// container runtime would not read it as a registry: its first component
// must be a host (a dot or a port, or localhost), else "myregistry/calico/
// node" is docker.io's repository myregistry/calico/node.
func CheckRegistry(registry string) (string, error) {
	registry = strings.TrimSuffix(registry, "/")
	if registry == "" || strings.Contains(registry, "://") || strings.ContainsAny(registry, " \t@") {
		return "", fmt.Errorf("registry %q: want a host like quay.io or mirror.local:5000, optionally with a path", registry)
	}
	host, path, _ := strings.Cut(registry, "/")
	if !strings.ContainsAny(host, ".:") && host != "localhost" {
		return "", fmt.Errorf("registry %q: %q is not a host name (no dot, no port), so a container runtime would pull docker.io/%s/calico/...: write a host like %s.local or %s:5000", registry, host, registry, host, host)
	}
	if last := path[strings.LastIndex(path, "/")+1:]; last == "calico" || last == "tigera" {
		return "", fmt.Errorf("registry %q ends in %q, and images keep their own path: calico/node would be %s/calico/node; to replace the calico/ part, as Calico's imagePath does, write registry: %s and imagePath: %s", registry, last, registry, host, path)
	}
	return registry, nil
}

// SetImagePath replaces the path of every Calico image before its name
// (calico/node -> path/node), the operator's Installation spec.imagePath
// for a calico.yaml install. It returns how many entries changed.
func SetImagePath(objs []*Object, path string) (int, error) {
	path, err := CheckImagePath(path)
	if err != nil {
		return 0, err
	}
	return rewriteImages(objs, CalicoImages, func(r *ImageRef) {
		r.Path = path + "/" + r.Path[strings.LastIndex(r.Path, "/")+1:]
	})
}

var imagePathRe = regexp.MustCompile(`^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$`)

// CheckImagePath returns path without slashes at its ends, or why it is
// not a repository path (lower case components, no registry host).
func CheckImagePath(path string) (string, error) {
	path = strings.Trim(path, "/")
	if !imagePathRe.MatchString(path) {
		return "", fmt.Errorf("imagePath %q: want a repository path like calico or mirror/calico (lower case, no host: that is registry)", path)
	}
	return path, nil
}

// rewriteImages applies edit to the images scope selects and returns how
// many container entries changed.
func rewriteImages(objs []*Object, scope Scope, edit func(*ImageRef)) (int, error) {
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
			edit(&r)
			if s := r.String(); s != img {
				c["image"] = s
				n++
			}
		}
	}
	return n, nil
}
