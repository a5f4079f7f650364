package images

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// ImportedStore is the store of the images `cnimatrix images import`
// loaded (<cache>/imported): every run pushes them into its registry, under
// the names they were imported as, before any cell pushes its own.
func (c *Cache) ImportedStore() (*Store, error) {
	return OpenStore(filepath.Join(c.Dir, "imported"))
}

// ImportedFromAnnotation records the file an imported image came from.
const ImportedFromAnnotation = "dev.cnimatrix.imported-from"

// containerdNameAnnotation is the full image name containerd and Docker
// 25+ write into an exported layout's index.json (the OCI ref.name
// annotation often holds only the tag).
const containerdNameAnnotation = "io.containerd.image.name"

// Imported is one image (or index) that ImportFiles stored.
type Imported struct {
	Ref       string   // canonical: quay.io/calico/node:v3.32.1
	Digest    string   // of the manifest or index as stored
	Platforms []string // linux/amd64, linux/arm64, ...
	From      string   // the file or directory it came from
}

// ImportFiles stores in s every named image of each path: an OCI image
// layout directory (its index.json names the images; multi-arch indexes
// are kept whole, digests unchanged), a tar or gzip tar of one (what
// `docker save` writes since Docker 25, `skopeo copy oci-archive:`, ...),
// or a `docker save` tarball of the older format (manifest.json: one
// single-arch image per RepoTags entry; its layers are compressed on
// import, so its digest is not the registry's). An image without a full
// name (registry/repository:tag) is an error that says so.
func ImportFiles(ctx context.Context, s *Store, paths []string) ([]Imported, error) {
	var out []Imported
	for _, p := range paths {
		got, err := importPath(ctx, s, p)
		if err != nil {
			return out, fmt.Errorf("import %s: %w", p, err)
		}
		out = append(out, got...)
	}
	return out, nil
}

func importPath(ctx context.Context, s *Store, path string) ([]Imported, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return importLayout(ctx, s, path, path)
	}
	file := path
	if gz, err := isGzip(path); err != nil {
		return nil, err
	} else if gz {
		tmp, err := gunzipToTemp(ctx, path)
		if err != nil {
			return nil, err
		}
		defer os.Remove(tmp)
		file = tmp
	}
	members := map[string]bool{}
	if err := walkTar(ctx, file, func(h *tar.Header, _ io.Reader) error {
		members[strings.TrimPrefix(filepath.Clean(h.Name), "./")] = true
		return nil
	}); err != nil {
		return nil, fmt.Errorf("not a tarball of images: %w", err)
	}
	switch {
	case members["oci-layout"] && members["index.json"]:
		dir, err := os.MkdirTemp("", "cnimatrix-import-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		if err := untar(ctx, walkTar, file, dir, 0, false); err != nil {
			return nil, err
		}
		return importLayout(ctx, s, dir, path)
	case members["manifest.json"]:
		return importDockerSave(ctx, s, file, path)
	}
	return nil, errors.New("neither an OCI image layout (oci-layout, index.json) nor a docker save tarball (manifest.json)")
}

// importLayout stores every named descriptor of the layout at dir.
func importLayout(ctx context.Context, s *Store, dir, from string) ([]Imported, error) {
	root, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("not an OCI image layout: %w", err)
	}
	im, err := root.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(im.Manifests) == 0 {
		return nil, errors.New("the layout's index.json names no image")
	}
	var out []Imported
	for i, d := range im.Manifests {
		ref, err := layoutRefName(d)
		if err != nil {
			return out, fmt.Errorf("index.json manifest %d (%s): %w", i, d.Digest, err)
		}
		var obj ImageOrIndex
		switch {
		case d.MediaType.IsIndex():
			obj, err = root.ImageIndex(d.Digest)
		case d.MediaType.IsImage():
			obj, err = root.Image(d.Digest)
		default:
			err = fmt.Errorf("media type %q is neither an image nor an index", d.MediaType)
		}
		if err != nil {
			return out, fmt.Errorf("%s: %w", ref, err)
		}
		got, err := storeImported(ctx, s, ref, obj, from)
		if err != nil {
			return out, err
		}
		out = append(out, got)
	}
	return out, nil
}

// layoutRefName is the full image name of an index.json descriptor.
func layoutRefName(d v1.Descriptor) (string, error) {
	for _, key := range []string{containerdNameAnnotation, RefAnnotation} {
		v := d.Annotations[key]
		if v == "" {
			continue
		}
		if ref, err := fullRef(v); err == nil {
			return ref, nil
		}
	}
	return "", fmt.Errorf("no full image name (registry/repository:tag) in its %s or %s annotation (found %q): name it when exporting, e.g. skopeo copy ... oci:DIR:quay.io/calico/node:v3.32.1",
		containerdNameAnnotation, RefAnnotation, d.Annotations[RefAnnotation])
}

// fullRef accepts only a name with a repository path and a tag or digest
// ("v3.32.1" alone, the OCI annotation's usual content, is not a name).
func fullRef(s string) (string, error) {
	if !strings.Contains(s, "/") {
		return "", fmt.Errorf("%q has no repository", s)
	}
	r, err := name.ParseReference(s, name.StrictValidation)
	if err != nil {
		return "", err
	}
	return CanonicalRef(r.String())
}

// importDockerSave stores each RepoTags entry of a docker save tarball.
func importDockerSave(ctx context.Context, s *Store, file, from string) ([]Imported, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(file) }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, fmt.Errorf("docker save tarball: %w", err)
	}
	var out []Imported
	for i, d := range m {
		if len(d.RepoTags) == 0 {
			return out, fmt.Errorf("manifest.json entry %d (%s) has no RepoTags: save the image by name (docker save quay.io/calico/node:v3.32.1)", i, d.Config)
		}
		for _, t := range d.RepoTags {
			tag, err := name.NewTag(t)
			if err != nil {
				return out, fmt.Errorf("manifest.json entry %d: %w", i, err)
			}
			img, err := tarball.Image(opener, &tag)
			if err != nil {
				return out, fmt.Errorf("%s: %w", t, err)
			}
			got, err := storeImported(ctx, s, t, img, from)
			if err != nil {
				return out, err
			}
			out = append(out, got)
		}
	}
	return out, nil
}

func storeImported(ctx context.Context, s *Store, ref string, obj ImageOrIndex, from string) (Imported, error) {
	cref, err := CanonicalRef(ref)
	if err != nil {
		return Imported{}, err
	}
	if err := s.PutAnnotated(ctx, cref, obj, map[string]string{ImportedFromAnnotation: from}); err != nil {
		return Imported{}, err
	}
	stored, err := s.Get(cref)
	if err != nil {
		return Imported{}, err
	}
	return describeImported(cref, stored, from)
}

// ListImported describes what s holds.
func ListImported(s *Store) ([]Imported, error) {
	refs, err := s.Refs()
	if err != nil {
		return nil, err
	}
	slices.Sort(refs)
	var out []Imported
	for _, ref := range refs {
		d, err := s.Descriptor(ref)
		if err != nil {
			return nil, err
		}
		obj, err := s.Get(ref)
		if err != nil {
			return nil, err
		}
		got, err := describeImported(ref, obj, d.Annotations[ImportedFromAnnotation])
		if err != nil {
			return nil, err
		}
		out = append(out, got)
	}
	return out, nil
}

func describeImported(ref string, obj ImageOrIndex, from string) (Imported, error) {
	dg, err := obj.Digest()
	if err != nil {
		return Imported{}, err
	}
	got := Imported{Ref: ref, Digest: dg.String(), From: from}
	switch o := obj.(type) {
	case v1.ImageIndex:
		im, err := o.IndexManifest()
		if err != nil {
			return Imported{}, err
		}
		for _, d := range im.Manifests {
			if d.Platform != nil && d.Platform.OS != "unknown" {
				got.Platforms = append(got.Platforms, d.Platform.String())
			}
		}
	case v1.Image:
		cf, err := o.ConfigFile()
		if err != nil {
			return Imported{}, err
		}
		got.Platforms = []string{cf.Platform().String()}
	}
	return got, nil
}

func isGzip(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	b := make([]byte, 2)
	n, _ := io.ReadFull(f, b)
	return n == 2 && b[0] == 0x1f && b[1] == 0x8b, nil
}

func gunzipToTemp(ctx context.Context, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	zr, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp("", "cnimatrix-import-*.tar")
	if err != nil {
		return "", err
	}
	_, err = io.Copy(tmp, &ociCtxReader{ctx, zr})
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("gunzip %s: %w", path, err)
	}
	return tmp.Name(), nil
}
