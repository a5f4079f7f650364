package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/cnimatrix/cnimatrix/internal/logx"
)

// Registry is the in-process OCI registry (go-containerregistry's
// pkg/registry) that cluster nodes pull from. Blobs live in a directory, not
// in memory; manifests (small) are kept in memory by the registry, so a
// registry holds what was pushed since it started.
type Registry struct {
	addr     string
	pushHost string
	blobDir  string
	ownDir   bool
	links    []*Store
	log      *logx.Logger
	srv      *http.Server
	stop     chan struct{}
	client   *http.Transport

	tempName string
	pull     *pullThrough

	mu      sync.Mutex
	misses  []string
	origins map[string]Origin // canonical ref -> where its pushed content came from
	closed  bool
}

// RegistryOption configures StartRegistry.
type RegistryOption func(*Registry)

// RegistryBlobDir keeps the registry's blobs in dir (created if needed; left
// in place by Close). Without it a temporary directory is used and removed
// by Close.
func RegistryBlobDir(dir string) RegistryOption {
	return func(r *Registry) { r.blobDir = dir }
}

// RegistryTempName names the temporary blob directory (os.MkdirTemp's
// pattern, under $TMPDIR) when no RegistryBlobDir is given: a run puts its
// run ID in it so that `cnimatrix gc` can tell a dead run's blobs.
func RegistryTempName(pattern string) RegistryOption {
	return func(r *Registry) { r.tempName = pattern }
}

// RegistryLinkStore lets Push hard-link blobs from s instead of copying
// them, when the blob directory is on the same file system.
func RegistryLinkStore(s *Store) RegistryOption {
	return func(r *Registry) { r.links = append(r.links, s) }
}

// StartRegistry serves a registry on listenAddr ("127.0.0.1:0",
// "0.0.0.0:5000", ...) until Close is called or ctx is done.
func StartRegistry(ctx context.Context, listenAddr string, lg *logx.Logger, opts ...RegistryOption) (*Registry, error) {
	if lg == nil {
		lg = logx.Discard()
	}
	r := &Registry{log: lg, stop: make(chan struct{}), origins: map[string]Origin{}}
	for _, o := range opts {
		o(r)
	}
	if r.blobDir == "" {
		if r.tempName == "" {
			r.tempName = "cnimatrix-registry-"
		}
		d, err := os.MkdirTemp("", r.tempName)
		if err != nil {
			return nil, fmt.Errorf("start registry: %w", err)
		}
		r.blobDir, r.ownDir = d, true
	}
	if err := os.MkdirAll(filepath.Join(r.blobDir, "sha256"), 0o755); err != nil {
		return nil, fmt.Errorf("start registry: %w", err)
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", listenAddr)
	if err != nil {
		r.removeOwnDir()
		return nil, fmt.Errorf("start registry on %s: %w", listenAddr, err)
	}
	r.addr = ln.Addr().String()
	host, port, _ := net.SplitHostPort(r.addr)
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	r.pushHost = net.JoinHostPort(host, port)
	if t, ok := remote.DefaultTransport.(*http.Transport); ok {
		r.client = t.Clone()
	} else {
		r.client = http.DefaultTransport.(*http.Transport).Clone()
	}

	blobs := &regDiskBlobs{dir: r.blobDir}
	var h http.Handler = registry.New(
		registry.WithBlobHandler(blobs),
		registry.Logger(log.New(io.Discard, "", 0)),
	)
	if r.pull != nil {
		if err := r.pull.init(lg, r.client); err != nil {
			_ = ln.Close()
			r.removeOwnDir()
			return nil, fmt.Errorf("start registry: %w", err)
		}
		blobs.pull = r.pull
		h = r.pull.wrap(h)
	}
	r.srv = &http.Server{Handler: r.observe(h), ReadHeaderTimeout: 30 * time.Second}
	go func() {
		if err := r.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			lg.Infof("registry on %s stopped: %v", r.addr, err)
		}
	}()
	go func() {
		select {
		case <-ctx.Done():
			_ = r.Close()
		case <-r.stop:
		}
	}()
	lg.Infof("registry listening on %s (blobs in %s)", r.addr, r.blobDir)
	return r, nil
}

// Addr is the host:port the registry is bound to (the real port when
// listenAddr asked for port 0).
func (r *Registry) Addr() string { return r.addr }

// Close stops the server and removes a temporary blob directory.
func (r *Registry) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	close(r.stop)
	r.client.CloseIdleConnections()
	// Let running downloads finish briefly, then cut the rest: a client's
	// unused spare connection counts as busy for 5s in Shutdown.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var err error
	if r.srv.Shutdown(ctx) != nil {
		err = r.srv.Close()
	}
	r.removeOwnDir()
	if err != nil {
		return fmt.Errorf("stop registry: %w", err)
	}
	return nil
}

func (r *Registry) removeOwnDir() {
	if r.ownDir {
		_ = os.RemoveAll(r.blobDir)
	}
}

// Misses lists the manifests that were asked for and not found
// ("docker.io/library/busybox:1.36"), in the order first seen: an image the
// harness did not build shows up here.
func (r *Registry) Misses() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.misses)
}

// MirrorPath is the repository prefix under which the registry keeps
// images of upstream (the registry host, as in "docker.io"): the upstream
// host is the first path element, so docker.io and quay.io copies of one
// name stay apart.
func MirrorPath(upstream string) string {
	return strings.ReplaceAll(strings.ToLower(upstream), ":", "_")
}

// Push stores obj (image or index) for the upstream reference
// ("docker.io/cnimatrix/nginx:1.22", "nginx:1.22", "quay.io/x/y@sha256:...")
// as <addr>/docker.io/cnimatrix/nginx:1.22. Layers and configs go straight
// into the blob directory (hard-linked when possible), so only manifests
// travel over HTTP; pushing what is already there costs a few requests.
// OriginOf then says the image was built here (PushAs says otherwise).
func (r *Registry) Push(ctx context.Context, upstreamRef string, obj ImageOrIndex) error {
	return r.PushAs(ctx, upstreamRef, obj, Origin{Source: OriginBuilt})
}

func (r *Registry) push(ctx context.Context, upstreamRef string, obj ImageOrIndex) error {
	cref, err := CanonicalRef(upstreamRef)
	if err != nil {
		return fmt.Errorf("registry push: %w", err)
	}
	target, err := r.localRef(cref)
	if err != nil {
		return fmt.Errorf("registry push %s: %w", cref, err)
	}
	if err := r.preload(ctx, obj); err != nil {
		return fmt.Errorf("registry push %s: %w", cref, err)
	}
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithUserAgent(regPushAgent), remote.WithTransport(r.client)}
	switch o := obj.(type) {
	case v1.ImageIndex:
		err = remote.WriteIndex(target, o, ropts...)
	case v1.Image:
		err = remote.Write(target, o, ropts...)
	default:
		err = fmt.Errorf("neither an image nor an index: %T", obj)
	}
	if err != nil {
		return fmt.Errorf("registry push %s: %w", cref, err)
	}
	r.log.Debugf("registry: pushed %s as %s", cref, target)
	return nil
}

// localRef is where the registry serves the canonical upstream reference
// cref ("docker.io/cnimatrix/nginx:1.22"): <addr>/docker.io/cnimatrix/nginx:1.22.
func (r *Registry) localRef(cref string) (name.Reference, error) {
	up, rest, _ := strings.Cut(cref, "/")
	return name.ParseReference(r.pushHost+"/"+MirrorPath(up)+"/"+rest, name.Insecure)
}

// regPushAgent marks Push's own requests, whose "does it exist yet?"
// probes are not misses.
const regPushAgent = "cnimatrix-registry-push"

// preload puts every layer and config blob of obj into the blob directory.
func (r *Registry) preload(ctx context.Context, obj ImageOrIndex) error {
	dir := filepath.Join(r.blobDir, "sha256")
	put := func(h v1.Hash, size int64, open func() (io.ReadCloser, error), link string) error {
		if fi, err := os.Stat(filepath.Join(dir, h.Hex)); err == nil && fi.Size() == size {
			return nil
		}
		if link == "" {
			for _, s := range r.links {
				if s.hasBlob(h, size) {
					link = s.BlobPath(h)
					break
				}
			}
		}
		return storeBlobInto(ctx, dir, h, size, open, link)
	}
	switch o := obj.(type) {
	case v1.ImageIndex:
		im, err := o.IndexManifest()
		if err != nil {
			return err
		}
		for _, d := range im.Manifests {
			var child ImageOrIndex
			switch {
			case d.MediaType.IsIndex():
				child, err = o.ImageIndex(d.Digest)
			case d.MediaType.IsImage():
				child, err = o.Image(d.Digest)
			default:
				continue
			}
			if err != nil {
				return err
			}
			if err := r.preload(ctx, child); err != nil {
				return err
			}
		}
	case v1.Image:
		layers, err := o.Layers()
		if err != nil {
			return err
		}
		for _, l := range layers {
			d, err := l.Digest()
			if err != nil {
				return err
			}
			size, err := l.Size()
			if err != nil {
				return err
			}
			link := ""
			if fl, ok := l.(*ociFileLayer); ok {
				link = fl.file
			}
			if err := put(d, size, l.Compressed, link); err != nil {
				return err
			}
		}
		cn, err := o.ConfigName()
		if err != nil {
			return err
		}
		cfg, err := o.RawConfigFile()
		if err != nil {
			return err
		}
		return put(cn, int64(len(cfg)), storeBytes(cfg), "")
	}
	return nil
}

// observe logs requests and remembers manifest misses.
func (r *Registry) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		t0 := time.Now()
		sw := &regStatusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, req)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		r.log.Debugf("registry %s %s %s -> %d (%d bytes, %s)", req.RemoteAddr, req.Method, req.URL.Path, sw.status, sw.n, time.Since(t0).Truncate(time.Millisecond))
		if sw.status != http.StatusNotFound || (req.Method != http.MethodGet && req.Method != http.MethodHead) ||
			strings.Contains(req.UserAgent(), regPushAgent) {
			return
		}
		repo, ref, ok := regManifestPath(req.URL.Path)
		if !ok {
			return
		}
		miss := repo + refSep(ref) + ref
		r.mu.Lock()
		seen := slices.Contains(r.misses, miss)
		if !seen {
			r.misses = append(r.misses, miss)
		}
		r.mu.Unlock()
		if !seen {
			r.log.Infof("registry: %s asked for %s, which was not pushed", req.RemoteAddr, miss)
		}
	})
}

// regManifestPath splits /v2/<repo>/manifests/<ref>.
func regManifestPath(p string) (repo, ref string, ok bool) {
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return "", "", false
	}
	i := strings.LastIndex(rest, "/manifests/")
	if i < 0 {
		return "", "", false
	}
	return rest[:i], rest[i+len("/manifests/"):], true
}

type regStatusWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *regStatusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *regStatusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

// ReadFrom keeps http's sendfile path for blob downloads.
func (w *regStatusWriter) ReadFrom(src io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := io.Copy(w.ResponseWriter, src)
	w.n += n
	return n, err
}

// regDiskBlobs keeps blobs in dir/sha256/<hex>. Unlike the disk handler of
// go-containerregistry it does not re-hash a blob on every HEAD and GET
// (hundreds of megabytes per node pull): blobs are verified once, when
// written.
// With pull-through, a blob it lacks is fetched first (pullThrough.fetchBlob).
type regDiskBlobs struct {
	dir  string
	pull *pullThrough
}

func (b *regDiskBlobs) path(h v1.Hash) string { return filepath.Join(b.dir, h.Algorithm, h.Hex) }

func (b *regDiskBlobs) Stat(ctx context.Context, repo string, h v1.Hash) (int64, error) {
	fi, err := os.Stat(b.path(h))
	if errors.Is(err, os.ErrNotExist) && b.fetched(ctx, repo, h) {
		fi, err = os.Stat(b.path(h))
	}
	if errors.Is(err, os.ErrNotExist) {
		return 0, registry.ErrNotFound
	} else if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func (b *regDiskBlobs) Get(ctx context.Context, repo string, h v1.Hash) (io.ReadCloser, error) {
	f, err := os.Open(b.path(h))
	if errors.Is(err, os.ErrNotExist) && b.fetched(ctx, repo, h) {
		f, err = os.Open(b.path(h))
	}
	if errors.Is(err, os.ErrNotExist) {
		return nil, registry.ErrNotFound
	}
	return f, err
}

// fetched pulls a missing blob through from repo's upstream, if it has one.
func (b *regDiskBlobs) fetched(ctx context.Context, repo string, h v1.Hash) bool {
	if b.pull == nil || h.Algorithm != "sha256" {
		return false
	}
	ok, err := b.pull.fetchBlob(ctx, filepath.Join(b.dir, h.Algorithm), repo, h)
	if err != nil {
		b.pull.log.Infof("registry: blob %s of %s: %v", h, repo, err)
	}
	return ok && err == nil
}

func (b *regDiskBlobs) Put(ctx context.Context, _ string, h v1.Hash, rc io.ReadCloser) error {
	dir := filepath.Join(b.dir, h.Algorithm)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return storeBlobInto(ctx, dir, h, -1, func() (io.ReadCloser, error) { return rc, nil }, "")
}

func (b *regDiskBlobs) Delete(_ context.Context, _ string, h v1.Hash) error {
	err := os.Remove(b.path(h))
	if errors.Is(err, os.ErrNotExist) {
		return registry.ErrNotFound
	}
	return err
}

// WriteContainerdHosts writes dir/<upstream>/hosts.toml for each upstream
// registry host ("docker.io", "quay.io", "registry.k8s.io") so that
// containerd 2.x, with its registry config_path set to dir, pulls
// docker.io/x/y:t from http://<endpoint>/v2/docker.io/x/y/... .
//
// The mirror is the namespace's server, not an extra host in front of the
// real one: the upstream (for docker.io that is registry-1.docker.io) is
// never tried, so a run cannot silently fetch an image the harness did not
// build, and a missing image fails with the registry's "not found" instead
// of a DNS or connect error from the upstream. override_path tells
// containerd that the server URL's path already is the API root
// (/v2/<upstream>), instead of appending /v2 to it.
func WriteContainerdHosts(dir, endpoint string, upstreams []string) error {
	files, err := ContainerdHosts(endpoint, upstreams)
	if err != nil {
		return err
	}
	for _, rel := range slices.Sorted(maps.Keys(files)) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("containerd hosts %s: %w", rel, err)
		}
		if err := os.WriteFile(p, []byte(files[rel]), 0o644); err != nil {
			return fmt.Errorf("containerd hosts %s: %w", rel, err)
		}
	}
	return nil
}

// ContainerdHosts is what WriteContainerdHosts writes: the path of each
// hosts.toml relative to the certs.d directory, and its content (for nodes
// that are written to by other means than a host directory, e.g. VMs).
func ContainerdHosts(endpoint string, upstreams []string) (map[string]string, error) {
	if endpoint == "" || strings.Contains(endpoint, "/") {
		return nil, fmt.Errorf("containerd hosts: endpoint must be host:port, got %q", endpoint)
	}
	files := map[string]string{}
	for _, up := range upstreams {
		if up == "" || strings.ContainsAny(up, "/ ") {
			return nil, fmt.Errorf("containerd hosts: bad upstream registry host %q", up)
		}
		upstreamServer := "https://" + up
		if up == "docker.io" {
			upstreamServer = "https://registry-1.docker.io"
		}
		files[containerdHostDir(up)+"/hosts.toml"] = fmt.Sprintf(`# Written by cnimatrix: %[1]s images come only from the harness's registry.
# The upstream server (%[2]s) is deliberately not configured as a fallback.
server = "http://%[3]s/v2/%[4]s"
override_path = true
capabilities = ["pull", "resolve"]
`, up, upstreamServer, endpoint, MirrorPath(up))
	}
	return files, nil
}

// containerdHostDir is the directory containerd looks up for a registry
// host: "host:port" is spelled "host_port_" (containerd also accepts
// "host:port", but not every file system or tar tool likes the colon).
func containerdHostDir(host string) string {
	if i := strings.LastIndex(host, ":"); i > 0 {
		return host[:i] + "_" + host[i+1:] + "_"
	}
	return host
}
