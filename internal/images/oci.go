package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ImageOrIndex is a v1.Image or a v1.ImageIndex: what the store and the
// registry keep under a reference.
type ImageOrIndex interface {
	MediaType() (types.MediaType, error)
	Digest() (v1.Hash, error)
	Size() (int64, error)
	RawManifest() ([]byte, error)
}

var (
	_ ImageOrIndex = v1.Image(nil)
	_ ImageOrIndex = v1.ImageIndex(nil)
)

// ociLayerRecipe changes whenever the way layers are written changes, so
// cached layers of an older recipe are not reused.
const ociLayerRecipe = "oci-layer/v1"

// ociEpoch is the modification time of every entry the harness writes
// itself, so layers built from the same inputs have the same digest.
var ociEpoch = time.Unix(1700000000, 0).UTC()

// LayerFile is one entry of an in-memory layer. Mode carries the type: a
// regular file unless it has fs.ModeDir (a directory) or fs.ModeSymlink (a
// symbolic link to Target). Zero permission bits mean 0644 for files and
// 0755 for directories. Entries are owned by root.
type LayerFile struct {
	Mode    fs.FileMode
	Content []byte
	Target  string
	// UID and GID own the entry (root when zero). Left out of the JSON
	// when zero, so cache keys of files without them stay as they were.
	UID int `json:",omitempty"`
	GID int `json:",omitempty"`
}

// LayerFiles maps a path inside the image ("etc/passwd", no leading slash
// needed) to its entry. Parent directories that are not listed are not
// written: the runtime creates missing ones, and not writing them keeps a
// lower layer's /bin -> usr/bin symlink intact, so use /usr paths.
type LayerFiles map[string]LayerFile

// ociFileLayer is a gzip layer whose digests were computed when it was
// written, so that neither the store, the registry nor docker load ever
// compresses it again or holds it in memory. Its bytes are in a file, or in
// memory for small generated layers.
type ociFileLayer struct {
	file   string
	data   []byte
	digest v1.Hash
	diffID v1.Hash
	size   int64
}

var _ v1.Layer = (*ociFileLayer)(nil)

func (l *ociFileLayer) Digest() (v1.Hash, error) { return l.digest, nil }
func (l *ociFileLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }
func (l *ociFileLayer) Size() (int64, error)     { return l.size, nil }
func (l *ociFileLayer) MediaType() (types.MediaType, error) {
	return types.OCILayer, nil
}

func (l *ociFileLayer) Compressed() (io.ReadCloser, error) {
	if l.file == "" {
		return io.NopCloser(bytes.NewReader(l.data)), nil
	}
	return os.Open(l.file)
}

func (l *ociFileLayer) Uncompressed() (io.ReadCloser, error) {
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(rc)
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("layer %s: %w", l.digest, err)
	}
	return &ociGunzip{zr, rc}, nil
}

type ociGunzip struct {
	*gzip.Reader
	under io.Closer
}

func (g *ociGunzip) Close() error {
	g.Reader.Close()
	return g.under.Close()
}

// ociLayerMeta is what layer.json keeps beside layer.tar.gz.
type ociLayerMeta struct {
	Digest v1.Hash `json:"digest"`
	DiffID v1.Hash `json:"diffID"`
	Size   int64   `json:"size"`
}

// ociCompress writes the gzip of what tarFn writes to out and returns the
// digests of both forms, computed in the same pass.
func ociCompress(out io.Writer, tarFn func(w io.Writer) error) (ociLayerMeta, error) {
	zh, th := sha256.New(), sha256.New()
	cnt := &ociCounter{}
	zw, err := gzip.NewWriterLevel(io.MultiWriter(out, zh, cnt), gzip.BestSpeed)
	if err != nil {
		return ociLayerMeta{}, err
	}
	if err := tarFn(io.MultiWriter(zw, th)); err != nil {
		return ociLayerMeta{}, err
	}
	if err := zw.Close(); err != nil {
		return ociLayerMeta{}, err
	}
	return ociLayerMeta{Digest: ociHash(zh), DiffID: ociHash(th), Size: cnt.n}, nil
}

type ociCounter struct{ n int64 }

func (c *ociCounter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

func ociHash(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", h.Sum(nil))}
}

// ociCachedLayer returns the layer cached as layers/name-key, writing it
// with tarFn (which produces the uncompressed tar stream) when missing.
func (c *Cache) ociCachedLayer(ctx context.Context, name, key string, tarFn func(ctx context.Context, w io.Writer) error) (v1.Layer, error) {
	dir, err := c.DoLocked(ctx, "layers", name, key, func(ctx context.Context, dir string) error {
		f, err := os.Create(filepath.Join(dir, "layer.tar.gz"))
		if err != nil {
			return err
		}
		meta, err := ociCompress(f, func(w io.Writer) error { return tarFn(ctx, w) })
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		b, _ := json.Marshal(meta)
		return os.WriteFile(filepath.Join(dir, "layer.json"), b, 0o644)
	})
	if err != nil {
		return nil, err
	}
	return ociLoadLayer(dir)
}

func ociLoadLayer(dir string) (*ociFileLayer, error) {
	b, err := os.ReadFile(filepath.Join(dir, "layer.json"))
	if err != nil {
		return nil, fmt.Errorf("cached layer: %w", err)
	}
	var m ociLayerMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("cached layer %s: %w", dir, err)
	}
	return &ociFileLayer{file: filepath.Join(dir, "layer.tar.gz"), digest: m.Digest, diffID: m.DiffID, size: m.Size}, nil
}

// LayerFromTarball returns a gzip layer of the uncompressed tarball at
// tarPath as is. The compressed copy is made once, in a single pass that
// also computes both digests, and cached (keyed by the tarball's path, size
// and modification time), so the layer streams from disk afterwards.
func (c *Cache) LayerFromTarball(ctx context.Context, tarPath string) (v1.Layer, error) {
	abs, err := filepath.Abs(tarPath)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("layer from tarball: %w", err)
	}
	key := Key(ociLayerRecipe, "tarball", abs, fi.Size(), fi.ModTime().UnixNano())
	name := ociEntryName(strings.TrimSuffix(filepath.Base(abs), ".tar"))
	return c.ociCachedLayer(ctx, name, key, func(ctx context.Context, w io.Writer) error {
		f, err := os.Open(abs)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(w, &ociCtxReader{ctx, f})
		return err
	})
}

// LayerFromDir returns a gzip layer holding the contents of dir under
// inImage (e.g. "usr/local/bin"; "" for the image root). Entries are owned
// by root and carry a fixed time, so the digest depends only on names,
// modes, link targets and contents. Regular files, directories and symlinks
// are supported. The layer is cached keyed by the listing (names, sizes,
// modes, modification times).
func (c *Cache) LayerFromDir(ctx context.Context, dir, inImage string) (v1.Layer, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	inImage = strings.Trim(path.Clean("/"+inImage), "/")
	type entry struct {
		Rel    string
		Mode   fs.FileMode
		Size   int64
		MTime  int64
		Target string
	}
	var list []entry
	err = filepath.WalkDir(abs, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == abs {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(abs, p)
		e := entry{Rel: filepath.ToSlash(rel), Mode: fi.Mode(), MTime: fi.ModTime().UnixNano()}
		switch {
		case fi.Mode().IsRegular():
			e.Size = fi.Size()
		case fi.IsDir():
		case fi.Mode()&fs.ModeSymlink != 0:
			if e.Target, err = os.Readlink(p); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unsupported file type %s", p, fi.Mode().Type())
		}
		list = append(list, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("layer from dir %s: %w", dir, err)
	}
	key := Key(ociLayerRecipe, "dir", abs, inImage, list)
	return c.ociCachedLayer(ctx, ociEntryName(filepath.Base(abs)), key, func(ctx context.Context, w io.Writer) error {
		tw := tar.NewWriter(w)
		for _, e := range list {
			if err := ctx.Err(); err != nil {
				return err
			}
			name := path.Join(inImage, e.Rel)
			hdr := &tar.Header{Name: name, Mode: ociTarMode(e.Mode), ModTime: ociEpoch, Format: tar.FormatPAX}
			switch {
			case e.Mode.IsDir():
				hdr.Typeflag, hdr.Name = tar.TypeDir, name+"/"
				if err := tw.WriteHeader(hdr); err != nil {
					return err
				}
			case e.Mode&fs.ModeSymlink != 0:
				hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, e.Target
				if err := tw.WriteHeader(hdr); err != nil {
					return err
				}
			default:
				if err := ociTarFile(tw, hdr, filepath.Join(abs, filepath.FromSlash(e.Rel)), e.Size); err != nil {
					return err
				}
			}
		}
		return tw.Close()
	})
}

func ociTarFile(tw *tar.Writer, hdr *tar.Header, file string, size int64) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	hdr.Typeflag, hdr.Size = tar.TypeReg, size
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if _, err := io.CopyN(tw, f, size); err != nil {
		return fmt.Errorf("%s changed while being packed: %w", file, err)
	}
	return nil
}

// ociTarMode keeps permission, setuid, setgid and sticky bits.
func ociTarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

// LayerFromFiles returns a gzip layer of files, built in memory: meant for
// configuration files and scripts, not for large content.
func LayerFromFiles(files LayerFiles) (v1.Layer, error) {
	var buf bytes.Buffer
	meta, err := ociCompress(&buf, func(w io.Writer) error {
		tw := tar.NewWriter(w)
		if err := ociWriteFiles(tw, files, ""); err != nil {
			return err
		}
		return tw.Close()
	})
	if err != nil {
		return nil, fmt.Errorf("layer from files: %w", err)
	}
	return &ociFileLayer{data: buf.Bytes(), digest: meta.Digest, diffID: meta.DiffID, size: meta.Size}, nil
}

// ociCleanPath turns a path given by a caller into a tar name without a
// leading slash or "./".
func ociCleanPath(p string) string {
	return strings.Trim(path.Clean("/"+p), "/")
}

// ociWriteFiles writes files in name order; prefix ("./" or "") is put in
// front of every name to match the tarball they are appended to.
func ociWriteFiles(tw *tar.Writer, files LayerFiles, prefix string) error {
	names := make([]string, 0, len(files))
	for p := range files {
		names = append(names, p)
	}
	slices.SortFunc(names, func(a, b string) int { return strings.Compare(ociCleanPath(a), ociCleanPath(b)) })
	for _, p := range names {
		f := files[p]
		name := ociCleanPath(p)
		if name == "" {
			return fmt.Errorf("layer file %q: not a path", p)
		}
		hdr := &tar.Header{Name: prefix + name, ModTime: ociEpoch, Mode: ociTarMode(f.Mode), Uid: f.UID, Gid: f.GID, Format: tar.FormatPAX}
		switch {
		case f.Mode&fs.ModeSymlink != 0:
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, f.Target, 0o777
		case f.Mode.IsDir():
			hdr.Typeflag, hdr.Name = tar.TypeDir, hdr.Name+"/"
			if f.Mode.Perm() == 0 {
				hdr.Mode |= 0o755
			}
		case f.Mode.Type() == 0:
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(f.Content))
			if f.Mode.Perm() == 0 {
				hdr.Mode |= 0o644
			}
		default:
			return fmt.Errorf("layer file %s: unsupported type %s", name, f.Mode.Type())
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.Content); err != nil {
				return err
			}
		}
	}
	return nil
}

// ociEntryName makes s usable as a cache entry name.
func ociEntryName(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
	if len(s) > 60 {
		s = s[:60]
	}
	if s == "" || s[0] == '.' {
		s = "x" + s
	}
	return s
}

type ociCtxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r *ociCtxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// OCIPlatform is the OCI platform of a Linux image for a Go architecture
// name. arm64 carries variant v8, as Docker's own arm64 images do:
// containerd and Docker normalise arm64 to arm64/v8 when matching, and
// go-containerregistry matches a request without a variant against it.
func OCIPlatform(arch string) v1.Platform {
	p := v1.Platform{OS: "linux", Architecture: arch}
	switch arch {
	case "arm64":
		p.Variant = "v8"
	case "arm":
		p.Variant = "v7"
	}
	return p
}

// NewImage assembles a Linux image for arch from layers (lowest first) and
// cfg, with OCI media types and a fixed creation time so that equal inputs
// give an equal digest.
func NewImage(arch string, layers []v1.Layer, cfg v1.Config) (v1.Image, error) {
	if arch == "" {
		return nil, fmt.Errorf("new image: no architecture")
	}
	p := OCIPlatform(arch)
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.ConfigFile(base, &v1.ConfigFile{
		Architecture: p.Architecture,
		OS:           p.OS,
		Variant:      p.Variant,
		Created:      v1.Time{Time: ociEpoch},
		Config:       cfg,
		RootFS:       v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, fmt.Errorf("new image %s: %w", arch, err)
	}
	adds := make([]mutate.Addendum, 0, len(layers))
	for _, l := range layers {
		adds = append(adds, mutate.Addendum{
			Layer:     l,
			MediaType: types.OCILayer,
			History:   v1.History{Created: v1.Time{Time: ociEpoch}, CreatedBy: "cnimatrix"},
		})
	}
	img, err = mutate.Append(img, adds...)
	if err != nil {
		return nil, fmt.Errorf("new image %s: %w", arch, err)
	}
	return img, nil
}

// NewIndex makes an OCI image index of per-architecture images; each entry's
// platform is read from the image's config.
func NewIndex(imgs ...v1.Image) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	adds := make([]mutate.IndexAddendum, 0, len(imgs))
	for _, img := range imgs {
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, fmt.Errorf("new index: %w", err)
		}
		p := cf.Platform()
		if p == nil || p.Architecture == "" {
			return nil, fmt.Errorf("new index: image without platform")
		}
		mt, err := img.MediaType()
		if err != nil {
			return nil, fmt.Errorf("new index: %w", err)
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{MediaType: mt, Platform: p}})
	}
	return mutate.AppendManifests(idx, adds...), nil
}

// ImageForPlatform returns the image of obj for arch: obj itself when it is
// an image of that architecture, else the index entry for it.
func ImageForPlatform(obj ImageOrIndex, arch string) (v1.Image, error) {
	switch o := obj.(type) {
	case v1.ImageIndex:
		im, err := o.IndexManifest()
		if err != nil {
			return nil, err
		}
		for _, d := range im.Manifests {
			if d.Platform != nil && d.Platform.OS == "linux" && d.Platform.Architecture == arch && d.MediaType.IsImage() {
				return o.Image(d.Digest)
			}
		}
		return nil, fmt.Errorf("no linux/%s image in index", arch)
	case v1.Image:
		cf, err := o.ConfigFile()
		if err != nil {
			return nil, err
		}
		if cf.Architecture != arch {
			return nil, fmt.Errorf("image is linux/%s, not linux/%s", cf.Architecture, arch)
		}
		return o, nil
	}
	return nil, fmt.Errorf("neither an image nor an index: %T", obj)
}
