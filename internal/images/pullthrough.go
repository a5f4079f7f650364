package images

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/singleflight"

	"github.com/cnimatrix/cnimatrix/internal/logx"
)

// Upstreams maps a registry host as images name it ("docker.io",
// "quay.io", "registry.k8s.io") to the base URL the harness registry
// fetches that host's images from when it holds none of its own: the real
// registry, a company mirror, or a test's fake upstream.
type Upstreams map[string]string

// DefaultUpstreams are the real registries of the hosts the nodes are
// pointed at the harness registry for.
func DefaultUpstreams() Upstreams {
	return Upstreams{
		"docker.io":       "https://index.docker.io",
		"quay.io":         "https://quay.io",
		"registry.k8s.io": "https://registry.k8s.io",
		"ghcr.io":         "https://ghcr.io",
	}
}

// ParseUpstream reads "HOST=URL" ("docker.io=http://127.0.0.1:5001"). The
// URL is scheme and host only: http:// is reached without TLS.
func ParseUpstream(s string) (host, base string, err error) {
	host, base, ok := strings.Cut(s, "=")
	host = strings.ToLower(strings.TrimSpace(host))
	if !ok || host == "" || strings.TrimSpace(base) == "" {
		return "", "", fmt.Errorf("upstream %q: want HOST=URL, as in docker.io=https://mirror.example.com", s)
	}
	if _, err := upstreamRegistry(strings.TrimSpace(base)); err != nil {
		return "", "", fmt.Errorf("upstream %q: %w", s, err)
	}
	return host, strings.TrimSpace(base), nil
}

func upstreamRegistry(base string) (name.Registry, error) {
	u, err := url.Parse(base)
	if err != nil {
		return name.Registry{}, err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "" || u.RawQuery != "" {
		return name.Registry{}, fmt.Errorf("%q is not a registry base URL (http:// or https:// and a host, no path)", base)
	}
	if u.Scheme == "http" {
		return name.NewRegistry(u.Host, name.Insecure)
	}
	return name.NewRegistry(u.Host, name.StrictValidation)
}

// RegistryPullThrough makes the registry a pull-through cache of ups: a
// manifest it was not given is fetched from the upstream of the first path
// element (docker.io/calico/node -> docker.io's upstream, calico/node),
// with every manifest an index names, so the nodes resolve their platform;
// layers are fetched only when a node (or the arch audit) asks for them,
// and kept in blobCache (when not empty) for the next run. Tags are
// resolved again in every run: an upstream tag that moved is seen.
// An upstream that does not answer is left alone for a minute.
func RegistryPullThrough(ups Upstreams, blobCache string) RegistryOption {
	return func(r *Registry) { r.pull = &pullThrough{ups: ups, blobCache: blobCache} }
}

// pullThrough is the registry's pull-through state.
type pullThrough struct {
	ups       Upstreams
	blobCache string

	byDir     map[string]upstream // MirrorPath(host) -> upstream
	log       *logx.Logger
	transport http.RoundTripper
	flight    singleflight.Group

	mu     sync.Mutex
	down   map[string]time.Time // upstream host -> not asked again before
	pulled []string
	from   map[string]string // canonical ref pulled -> its upstream's base
}

type upstream struct {
	host string // as images name it: docker.io
	base string // as configured: https://index.docker.io
	reg  name.Registry
}

// pullManifestTimeout bounds fetching one image's manifests from its
// upstream; pullBlobTimeout one layer (a node's pull waits for it).
const (
	pullManifestTimeout = 2 * time.Minute
	pullBlobTimeout     = 15 * time.Minute
	pullDownFor         = time.Minute
	pullAgent           = "cnimatrix-pull-through"
)

func (p *pullThrough) init(lg *logx.Logger, rt http.RoundTripper) error {
	p.log, p.transport = lg, rt
	p.byDir = map[string]upstream{}
	p.down = map[string]time.Time{}
	p.from = map[string]string{}
	for host, base := range p.ups {
		reg, err := upstreamRegistry(base)
		if err != nil {
			return fmt.Errorf("upstream %s: %w", host, err)
		}
		p.byDir[MirrorPath(host)] = upstream{host: host, base: base, reg: reg}
	}
	if p.blobCache != "" {
		if err := os.MkdirAll(filepath.Join(p.blobCache, "sha256"), 0o755); err != nil {
			return fmt.Errorf("pull-through blob cache: %w", err)
		}
	}
	return nil
}

// split finds the upstream of a registry repository
// ("docker.io/calico/node") and the repository there ("calico/node").
func (p *pullThrough) split(repo string) (upstream, name.Repository, bool) {
	dir, rest, ok := strings.Cut(repo, "/")
	if !ok || rest == "" {
		return upstream{}, name.Repository{}, false
	}
	up, ok := p.byDir[dir]
	if !ok {
		return upstream{}, name.Repository{}, false
	}
	return up, up.reg.Repo(rest), true
}

// Pulled lists the images fetched from an upstream so far ("docker.io/
// calico/node:v3.32.1 from https://index.docker.io"), in order.
func (r *Registry) Pulled() []string {
	if r.pull == nil {
		return nil
	}
	r.pull.mu.Lock()
	defer r.pull.mu.Unlock()
	return slices.Clone(r.pull.pulled)
}

// wrap answers a manifest the registry does not hold by fetching it from
// its upstream first; everything else goes straight to next.
func (p *pullThrough) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if (req.Method == http.MethodGet || req.Method == http.MethodHead) && !strings.Contains(req.UserAgent(), regPushAgent) {
			if repo, ref, ok := regManifestPath(req.URL.Path); ok {
				if up, urepo, ok := p.split(repo); ok && !hasManifest(next, req.Context(), repo, ref) {
					_, _, _ = p.flight.Do("m|"+repo+"|"+ref, func() (any, error) {
						return nil, p.pullManifest(req.Context(), next, up, urepo, repo, ref)
					})
				}
			}
		}
		next.ServeHTTP(w, req)
	})
}

// pullManifest copies repo:ref (and, for an index, every manifest it
// names) from the upstream into the registry. Failures are logged: the
// node then gets the registry's own not-found.
func (p *pullThrough) pullManifest(ctx context.Context, next http.Handler, up upstream, urepo name.Repository, repo, ref string) error {
	if until, ok := p.isDown(up.host); ok {
		p.log.Debugf("registry: not asking %s for %s/%s until %s", up.base, repo, ref, until.Format(time.TimeOnly))
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pullManifestTimeout)
	defer cancel()
	t0 := time.Now()
	var uref name.Reference = urepo.Tag(ref)
	if strings.Contains(ref, ":") {
		uref = urepo.Digest(ref)
	}
	desc, err := remote.Get(uref, p.remoteOpts(ctx)...)
	if err != nil {
		p.failed(up, uref, err)
		return err
	}
	if err := p.copyManifest(ctx, next, urepo, repo, ref, desc.MediaType, desc.Manifest); err != nil {
		p.log.Infof("registry: %s from %s: %v", uref, up.base, err)
		return err
	}
	cref := up.host + "/" + urepo.RepositoryStr() + refSep(ref) + ref
	what := cref + " from " + up.base
	p.mu.Lock()
	p.pulled = append(p.pulled, what)
	p.from[cref] = up.base
	p.mu.Unlock()
	p.log.Infof("registry: pulled %s (%s, %s)", what, desc.Digest, time.Since(t0).Truncate(time.Millisecond))
	return nil
}

func refSep(ref string) string {
	if strings.Contains(ref, ":") {
		return "@"
	}
	return ":"
}

// copyManifest stores one manifest under ref, its children first (the
// registry refuses an index whose manifests it does not hold).
func (p *pullThrough) copyManifest(ctx context.Context, next http.Handler, urepo name.Repository, repo, ref string, mt types.MediaType, raw []byte) error {
	if mt.IsIndex() {
		idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
		if err != nil {
			return fmt.Errorf("index %s: %w", ref, err)
		}
		for _, d := range idx.Manifests {
			if !d.MediaType.IsImage() && !d.MediaType.IsIndex() {
				continue
			}
			if hasManifest(next, ctx, repo, d.Digest.String()) {
				continue
			}
			child, err := remote.Get(urepo.Digest(d.Digest.String()), p.remoteOpts(ctx)...)
			if err != nil {
				return fmt.Errorf("manifest %s of index %s: %w", d.Digest, ref, err)
			}
			if err := p.copyManifest(ctx, next, urepo, repo, d.Digest.String(), child.MediaType, child.Manifest); err != nil {
				return err
			}
		}
	}
	return putManifest(ctx, next, repo, ref, string(mt), raw)
}

func (p *pullThrough) remoteOpts(ctx context.Context) []remote.Option {
	return []remote.Option{remote.WithContext(ctx), remote.WithTransport(p.transport), remote.WithUserAgent(pullAgent)}
}

// failed logs why uref could not be fetched; an upstream that did not
// answer at all (as opposed to answering "not found" or "denied") is not
// asked again for a while, so the nodes' retries do not each wait for it.
func (p *pullThrough) failed(up upstream, uref name.Reference, err error) {
	var terr *transport.Error
	if errors.As(err, &terr) {
		p.log.Infof("registry: %s has no %s (HTTP %d)", up.base, uref, terr.StatusCode)
		return
	}
	p.mu.Lock()
	p.down[up.host] = time.Now().Add(pullDownFor)
	p.mu.Unlock()
	p.log.Infof("registry: upstream %s does not answer for %s (asked again in %s): %v", up.base, uref, pullDownFor, err)
}

func (p *pullThrough) isDown(host string) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	until, ok := p.down[host]
	return until, ok && time.Now().Before(until)
}

// fetchBlob puts blob h of repo into dir (the registry's blob directory),
// from the blob cache or else from repo's upstream. It reports false when
// repo has no upstream.
func (p *pullThrough) fetchBlob(ctx context.Context, dir, repo string, h v1.Hash) (bool, error) {
	up, urepo, ok := p.split(repo)
	if !ok {
		return false, nil
	}
	_, err, _ := p.flight.Do("b|"+h.String(), func() (any, error) {
		if _, err := os.Stat(filepath.Join(dir, h.Hex)); err == nil {
			return nil, nil // a concurrent fetch just finished
		}
		// With a blob cache the layer is downloaded there once and linked
		// into the run's blob directory; without one, straight into it.
		into := dir
		if p.blobCache != "" {
			into = filepath.Join(p.blobCache, "sha256")
		}
		cached := filepath.Join(into, h.Hex)
		if _, err := os.Stat(cached); err != nil {
			if err := p.downloadBlob(ctx, up, urepo, repo, h, into); err != nil {
				return nil, err
			}
		}
		if into == dir {
			return nil, nil
		}
		return nil, storeBlobInto(ctx, dir, h, -1, func() (io.ReadCloser, error) { return os.Open(cached) }, cached)
	})
	return true, err
}

// downloadBlob writes blob h of urepo from its upstream into dir.
func (p *pullThrough) downloadBlob(ctx context.Context, up upstream, urepo name.Repository, repo string, h v1.Hash, dir string) error {
	if until, ok := p.isDown(up.host); ok {
		return fmt.Errorf("upstream %s does not answer (asked again at %s)", up.base, until.Format(time.TimeOnly))
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pullBlobTimeout)
	defer cancel()
	t0 := time.Now()
	l, err := remote.Layer(urepo.Digest(h.String()), p.remoteOpts(ctx)...)
	if err != nil {
		return err
	}
	if err := storeBlobInto(ctx, dir, h, -1, l.Compressed, ""); err != nil {
		return fmt.Errorf("blob %s from %s: %w", h, up.base, err)
	}
	p.log.Debugf("registry: blob %s of %s from %s (%s)", h, repo, up.base, time.Since(t0).Truncate(time.Millisecond))
	return nil
}

// hasManifest asks next, in process, whether it holds repo:ref.
func hasManifest(next http.Handler, ctx context.Context, repo, ref string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, "/v2/"+repo+"/manifests/"+ref, nil)
	if err != nil {
		return false
	}
	req.Header.Set("User-Agent", pullAgent)
	rec := &statusRecorder{header: http.Header{}}
	next.ServeHTTP(rec, req)
	return rec.code == http.StatusOK
}

// putManifest stores raw as repo:ref in next, in process.
func putManifest(ctx context.Context, next http.Handler, repo, ref, ctype string, raw []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, "/v2/"+repo+"/manifests/"+ref, bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("User-Agent", pullAgent)
	rec := &statusRecorder{header: http.Header{}}
	next.ServeHTTP(rec, req)
	if rec.code != http.StatusCreated {
		return fmt.Errorf("store manifest %s/%s: HTTP %d: %s", repo, ref, rec.code, strings.TrimSpace(rec.body.String()))
	}
	return nil
}

// statusRecorder is the http.ResponseWriter of an in-process request.
type statusRecorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (s *statusRecorder) Header() http.Header { return s.header }
func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
}
func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	if s.body.Len() < 4096 {
		s.body.Write(b)
	}
	return len(b), nil
}
