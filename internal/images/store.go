package images

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/stream"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/cnimatrix/cnimatrix/internal/logx"
)

// RefAnnotation is the OCI annotation that names a descriptor of the
// store's index.json.
const RefAnnotation = "org.opencontainers.image.ref.name"

// BuildKeyAnnotation records the cache key an entry was built from, so a
// warm run can tell that what is stored is what it would build.
const BuildKeyAnnotation = "dev.cnimatrix.build-key"

// Store is an OCI image layout (<cache>/oci) whose index.json names images
// and indexes by reference. Writers of one layout, in this process or
// another, are serialised by a lock file; index.json and every blob are
// replaced by rename, so readers never see a partial file and need no lock.
type Store struct {
	dir  string
	path layout.Path
}

// Store opens (creating) the cache's image store.
func (c *Cache) Store() (*Store, error) {
	return OpenStore(filepath.Join(c.Dir, "oci"))
}

// OpenStore opens the OCI layout at dir, creating an empty one if needed.
func OpenStore(dir string) (*Store, error) {
	s := &Store{dir: dir, path: layout.Path(dir)}
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err == nil {
		return s, nil
	}
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if err := storeWriteFileAtomic(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	// Create index.json only if absent, atomically (link fails on an
	// existing name): another opener may have created it and put entries
	// in since the Stat above.
	tmp := filepath.Join(dir, fmt.Sprintf(".tmp-index-%d-%p", os.Getpid(), s))
	empty := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}` + "\n"
	if err := os.WriteFile(tmp, []byte(empty), 0o644); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, filepath.Join(dir, "index.json")); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("open store: %w", err)
	}
	return s, nil
}

// Dir is the layout's directory.
func (s *Store) Dir() string { return s.dir }

// BlobPath is where the blob h lives (whether or not it is there).
func (s *Store) BlobPath(h v1.Hash) string {
	return filepath.Join(s.dir, "blobs", h.Algorithm, h.Hex)
}

// CanonicalRef parses ref and spells it registry/repository:tag (or
// @digest) with docker.io, not index.docker.io, for Docker Hub, so
// "nginx:1.22" and "docker.io/library/nginx:1.22" name the same entry.
func CanonicalRef(ref string) (string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", fmt.Errorf("reference %q: %w", ref, err)
	}
	reg := r.Context().RegistryStr()
	if reg == name.DefaultRegistry {
		reg = "docker.io"
	}
	base := reg + "/" + r.Context().RepositoryStr()
	switch t := r.(type) {
	case name.Tag:
		return base + ":" + t.TagStr(), nil
	case name.Digest:
		return base + "@" + t.DigestStr(), nil
	}
	return "", fmt.Errorf("reference %q: neither a tag nor a digest", ref)
}

// Put stores obj (a v1.Image or v1.ImageIndex) under ref, replacing what
// ref named before. Blobs already present are not written again, so putting
// identical content costs a few stats and leaves the layout as it was.
func (s *Store) Put(ctx context.Context, ref string, obj ImageOrIndex) error {
	return s.PutAnnotated(ctx, ref, obj, nil)
}

// PutAnnotated is Put with extra annotations on the index.json descriptor.
func (s *Store) PutAnnotated(ctx context.Context, ref string, obj ImageOrIndex, annotations map[string]string) error {
	cref, err := CanonicalRef(ref)
	if err != nil {
		return fmt.Errorf("store put: %w", err)
	}
	desc, err := storeDescriptor(obj)
	if err != nil {
		return fmt.Errorf("store put %s: %w", cref, err)
	}
	desc.Annotations = map[string]string{}
	maps.Copy(desc.Annotations, annotations)
	desc.Annotations[RefAnnotation] = cref

	unlock, err := lockFile(ctx, filepath.Join(s.dir, ".lock"), nil)
	if err != nil {
		return fmt.Errorf("store put %s: %w", cref, err)
	}
	defer unlock()
	im, err := s.readIndex()
	if err != nil {
		return fmt.Errorf("store put %s: %w", cref, err)
	}
	keep := im.Manifests[:0:0]
	same := false
	for _, d := range im.Manifests {
		if d.Annotations[RefAnnotation] != cref {
			keep = append(keep, d)
			continue
		}
		same = d.Digest == desc.Digest && maps.Equal(d.Annotations, desc.Annotations)
	}
	if err := s.writeTree(ctx, obj); err != nil {
		return fmt.Errorf("store put %s: %w", cref, err)
	}
	if same && len(keep) == len(im.Manifests)-1 {
		return nil
	}
	im.Manifests = append(keep, desc)
	if err := s.writeIndex(im); err != nil {
		return fmt.Errorf("store put %s: %w", cref, err)
	}
	return nil
}

func storeDescriptor(obj ImageOrIndex) (v1.Descriptor, error) {
	mt, err := obj.MediaType()
	if err != nil {
		return v1.Descriptor{}, err
	}
	if !mt.IsImage() && !mt.IsIndex() {
		return v1.Descriptor{}, fmt.Errorf("media type %s is neither an image nor an index", mt)
	}
	d, err := obj.Digest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	n, err := obj.Size()
	if err != nil {
		return v1.Descriptor{}, err
	}
	desc := v1.Descriptor{MediaType: mt, Digest: d, Size: n}
	if img, ok := obj.(v1.Image); ok {
		if cf, err := img.ConfigFile(); err == nil {
			desc.Platform = cf.Platform()
		}
	}
	return desc, nil
}

// Get returns what ref names: a v1.ImageIndex or a v1.Image read from the
// layout (layers stream from their blob files).
func (s *Store) Get(ref string) (ImageOrIndex, error) {
	d, err := s.Descriptor(ref)
	if err != nil {
		return nil, err
	}
	if d.MediaType.IsIndex() {
		root, err := s.path.ImageIndex()
		if err != nil {
			return nil, fmt.Errorf("store get %s: %w", ref, err)
		}
		ii, err := root.ImageIndex(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("store get %s: %w", ref, err)
		}
		return ii, nil
	}
	img, err := s.path.Image(d.Digest)
	if err != nil {
		return nil, fmt.Errorf("store get %s: %w", ref, err)
	}
	return img, nil
}

// ErrNotStored is returned (wrapped) for a reference the store does not hold.
var ErrNotStored = errors.New("not in the image store")

// Descriptor returns index.json's descriptor for ref.
func (s *Store) Descriptor(ref string) (v1.Descriptor, error) {
	cref, err := CanonicalRef(ref)
	if err != nil {
		return v1.Descriptor{}, err
	}
	im, err := s.readIndex()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("store %s: %w", cref, err)
	}
	for _, d := range im.Manifests {
		if d.Annotations[RefAnnotation] == cref {
			return d, nil
		}
	}
	return v1.Descriptor{}, fmt.Errorf("%s: %w", cref, ErrNotStored)
}

// Has reports whether ref names something in the store.
func (s *Store) Has(ref string) bool {
	_, err := s.Descriptor(ref)
	return err == nil
}

// Refs lists the stored references.
func (s *Store) Refs() ([]string, error) {
	im, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range im.Manifests {
		if r := d.Annotations[RefAnnotation]; r != "" {
			out = append(out, r)
		}
	}
	return out, nil
}

// Prune deletes blobs no stored reference reaches (left behind by replaced
// references) and returns how many bytes it freed.
func (s *Store) Prune(ctx context.Context) (int64, error) {
	unlock, err := lockFile(ctx, filepath.Join(s.dir, ".lock"), nil)
	if err != nil {
		return 0, fmt.Errorf("store prune: %w", err)
	}
	defer unlock()
	im, err := s.readIndex()
	if err != nil {
		return 0, fmt.Errorf("store prune: %w", err)
	}
	live := map[string]bool{}
	var mark func(d v1.Descriptor) error
	mark = func(d v1.Descriptor) error {
		live[d.Digest.Hex] = true
		if !d.MediaType.IsIndex() && !d.MediaType.IsImage() {
			return nil
		}
		b, err := os.ReadFile(s.BlobPath(d.Digest))
		if err != nil {
			return err
		}
		if d.MediaType.IsIndex() {
			child, err := v1.ParseIndexManifest(bytes.NewReader(b))
			if err != nil {
				return err
			}
			for _, c := range child.Manifests {
				if err := mark(c); err != nil {
					return err
				}
			}
			return nil
		}
		m, err := v1.ParseManifest(bytes.NewReader(b))
		if err != nil {
			return err
		}
		live[m.Config.Digest.Hex] = true
		for _, l := range m.Layers {
			live[l.Digest.Hex] = true
		}
		return nil
	}
	for _, d := range im.Manifests {
		if err := mark(d); err != nil {
			return 0, fmt.Errorf("store prune: %s: %w", d.Digest, err)
		}
	}
	dir := filepath.Join(s.dir, "blobs", "sha256")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("store prune: %w", err)
	}
	var freed int64
	for _, e := range ents {
		if live[e.Name()] {
			continue
		}
		if fi, err := e.Info(); err == nil {
			freed += fi.Size()
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return freed, fmt.Errorf("store prune: %w", err)
		}
	}
	return freed, nil
}

func (s *Store) readIndex() (*v1.IndexManifest, error) {
	f, err := os.Open(filepath.Join(s.dir, "index.json"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	im, err := v1.ParseIndexManifest(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return im, nil
}

func (s *Store) writeIndex(im *v1.IndexManifest) error {
	if im.Manifests == nil {
		im.Manifests = []v1.Descriptor{}
	}
	b, err := json.MarshalIndent(im, "", "  ")
	if err != nil {
		return err
	}
	return storeWriteFileAtomic(filepath.Join(s.dir, "index.json"), append(b, '\n'))
}

func storeWriteFileAtomic(file string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(file), ".tmp-"+filepath.Base(file)+"-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}

// writeTree writes every blob of obj, manifest last: a manifest blob in the
// store therefore means all it refers to is there too, which lets a re-put
// of known content stop at the first stat.
func (s *Store) writeTree(ctx context.Context, obj ImageOrIndex) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d, err := obj.Digest()
	if err != nil {
		return err
	}
	if s.hasBlob(d, -1) {
		return nil
	}
	switch o := obj.(type) {
	case v1.ImageIndex:
		im, err := o.IndexManifest()
		if err != nil {
			return err
		}
		for _, c := range im.Manifests {
			var child ImageOrIndex
			switch {
			case c.MediaType.IsIndex():
				child, err = o.ImageIndex(c.Digest)
			case c.MediaType.IsImage():
				child, err = o.Image(c.Digest)
			default:
				return fmt.Errorf("index entry %s: unsupported media type %s", c.Digest, c.MediaType)
			}
			if err != nil {
				return err
			}
			if err := s.writeTree(ctx, child); err != nil {
				return err
			}
		}
	case v1.Image:
		layers, err := o.Layers()
		if err != nil {
			return err
		}
		for _, l := range layers {
			if err := s.writeLayer(ctx, l); err != nil {
				return err
			}
		}
		cfgName, err := o.ConfigName()
		if err != nil {
			return err
		}
		cfg, err := o.RawConfigFile()
		if err != nil {
			return err
		}
		if err := s.writeBlob(ctx, cfgName, int64(len(cfg)), storeBytes(cfg), ""); err != nil {
			return err
		}
	default:
		return fmt.Errorf("neither an image nor an index: %T", obj)
	}
	raw, err := obj.RawManifest()
	if err != nil {
		return err
	}
	return s.writeBlob(ctx, d, int64(len(raw)), storeBytes(raw), "")
}

func (s *Store) writeLayer(ctx context.Context, l v1.Layer) error {
	d, err := l.Digest()
	if errors.Is(err, stream.ErrNotComputed) {
		return s.writeBlob(ctx, v1.Hash{}, -1, l.Compressed, "")
	} else if err != nil {
		return err
	}
	size, err := l.Size()
	if err != nil {
		return err
	}
	if s.hasBlob(d, size) {
		return nil
	}
	link := ""
	if fl, ok := l.(*ociFileLayer); ok {
		link = fl.file
	}
	return s.writeBlob(ctx, d, size, l.Compressed, link)
}

func (s *Store) hasBlob(h v1.Hash, size int64) bool {
	fi, err := os.Stat(s.BlobPath(h))
	return err == nil && fi.Mode().IsRegular() && (size < 0 || fi.Size() == size)
}

// writeBlob stores a blob by rename from a temporary file: hard-linked from
// linkFrom when that file is on the same file system, else copied from open
// while its digest is checked. A zero h means "unknown": the blob is then
// named by the digest computed.
func (s *Store) writeBlob(ctx context.Context, h v1.Hash, size int64, open func() (io.ReadCloser, error), linkFrom string) error {
	if h.Hex != "" && s.hasBlob(h, size) {
		return nil
	}
	dir := filepath.Join(s.dir, "blobs", "sha256")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return storeBlobInto(ctx, dir, h, size, open, linkFrom)
}

// storeBlobInto writes a blob into dir/<hex> (see writeBlob); the registry's
// blob directory has the same shape.
func storeBlobInto(ctx context.Context, dir string, h v1.Hash, size int64, open func() (io.ReadCloser, error), linkFrom string) error {
	if linkFrom != "" && h.Hex != "" {
		tmpName := filepath.Join(dir, fmt.Sprintf(".tmp-link-%d-%s", os.Getpid(), h.Hex))
		_ = os.Remove(tmpName)
		if err := os.Link(linkFrom, tmpName); err == nil {
			return os.Rename(tmpName, filepath.Join(dir, h.Hex))
		}
	}
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(dir, ".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	hh := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, hh), &ociCtxReader{ctx, rc})
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write blob %s: %w", h, err)
	}
	got := ociHash(hh)
	if h.Hex != "" && got != h {
		return fmt.Errorf("write blob: content has digest %s, expected %s", got, h)
	}
	if size >= 0 && n != size {
		return fmt.Errorf("write blob %s: %d bytes, expected %d", h, n, size)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, got.Hex))
}

// storeBytes opens b as a blob source.
func storeBytes(b []byte) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// CachedImage returns what the store holds under ref when it was put with
// the same build key; otherwise it calls build, stores the result under ref
// with key, and returns the stored copy (whose layers stream from the
// layout). Concurrent callers for one ref build it once.
func (c *Cache) CachedImage(ctx context.Context, ref, key string, build func(ctx context.Context) (ImageOrIndex, error)) (ImageOrIndex, error) {
	s, err := c.Store()
	if err != nil {
		return nil, err
	}
	hit := func() (ImageOrIndex, bool) {
		d, err := s.Descriptor(ref)
		if err != nil || d.Annotations[BuildKeyAnnotation] != key {
			return nil, false
		}
		obj, err := s.Get(ref)
		return obj, err == nil
	}
	if obj, ok := hit(); ok {
		c.Log.Debugf("image %s: stored (key %s)", ref, key)
		return obj, nil
	}
	lock := filepath.Join(s.dir, ".build-"+Key(ref)+".lock")
	unlock, err := lockFile(ctx, lock, func() { c.Log.Infof("waiting for another build of %s", ref) })
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	defer unlock()
	if obj, ok := hit(); ok {
		return obj, nil
	}
	obj, err := build(ctx)
	if err != nil {
		return nil, fmt.Errorf("build image %s: %w", ref, err)
	}
	if err := s.PutAnnotated(ctx, ref, obj, map[string]string{BuildKeyAnnotation: key}); err != nil {
		return nil, err
	}
	return s.Get(ref)
}

// DockerLoad loads a single-architecture image into the local Docker engine
// as ref. It does nothing when Docker already has ref with the same image
// ID (the config digest), so warm runs cost one docker inspect.
func DockerLoad(ctx context.Context, ref string, img v1.Image, log *logx.Logger) error {
	if log == nil {
		log = logx.Discard()
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("docker load %s: %w", ref, err)
	}
	want, err := img.ConfigName()
	if err != nil {
		return fmt.Errorf("docker load %s: %w", ref, err)
	}
	if id, _ := dockerImageID(ctx, ref); id == want.String() {
		log.Debugf("docker already has %s (%s)", ref, id)
		return nil
	}
	done := log.Phase("docker load " + ref)
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(tarball.Write(tag, img, pw)) }()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", "load")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pr, &out, &out
	err = cmd.Run()
	pr.CloseWithError(io.ErrClosedPipe)
	if err != nil {
		err = fmt.Errorf("docker load %s: %w: %s", ref, err, strings.TrimSpace(out.String()))
		done(err)
		return err
	}
	if id, err := dockerImageID(ctx, ref); err != nil || id != want.String() {
		err = fmt.Errorf("docker load %s: docker reports image ID %q, expected %s (%v)", ref, id, want, err)
		done(err)
		return err
	}
	done(nil)
	return nil
}

func dockerImageID(ctx context.Context, ref string) (string, error) {
	out, err := exec.CommandContext(ctx, "docker", "image", "inspect", "--format", "{{.Id}}", ref).Output()
	return strings.TrimSpace(string(out)), err
}
