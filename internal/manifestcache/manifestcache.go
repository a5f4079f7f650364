// Package manifestcache downloads CNI manifests into a content-addressed
// cache on disk and checks each against the sha256 the catalog pins, so a
// run applies exactly the bytes that were reviewed, and runs offline once a
// pinned file is cached.
package manifestcache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/images"
)

// maxSize bounds a download: Calico's calico.yaml is ~300 KiB with its CRDs,
// so anything near this is not a manifest.
const maxSize = 64 << 20

// DefaultDir is the manifest cache of the harness's build cache.
func DefaultDir() string { return filepath.Join(images.DefaultCacheDir(), "manifests") }

// Cache is a directory of downloaded files named by their sha256.
type Cache struct {
	Dir    string
	Client *http.Client // nil: a client with a 2-minute timeout
	// Mirror, for air-gapped use, is a base URL that serves the files
	// under their host and path (Mirror/raw.githubusercontent.com/...):
	// downloads go there instead. The pins are the same, so a mirror can
	// hand out nothing but the files the catalog vouches for. A file://
	// URL names a local directory in that layout (a copied mirror).
	Mirror string
}

// MirrorEnv names the environment variable that sets Cache.Mirror.
const MirrorEnv = "CNIMATRIX_MANIFEST_MIRROR"

// Source is where url is downloaded from: the mirror's copy when there is
// a mirror.
func (c *Cache) Source(url string) string {
	if c.Mirror == "" {
		return url
	}
	rest := url
	if i := strings.Index(url, "://"); i >= 0 {
		rest = url[i+3:]
	}
	return strings.TrimSuffix(c.Mirror, "/") + "/" + rest
}

// New is a cache in dir ("" for DefaultDir).
func New(dir string) *Cache {
	if dir == "" {
		dir = DefaultDir()
	}
	return &Cache{Dir: dir}
}

// Result is a file in the cache.
type Result struct {
	Path      string // the cached file
	SHA256    string // its sum, hex
	FromCache bool   // true when no download happened
	// Warning is set when the file was not pinned: it was downloaded and
	// cached, but nothing vouches for its content.
	Warning string
}

// MismatchError is a download whose sum differs from the pin. The file is
// not cached: a changed upstream file must be reviewed and re-pinned, never
// picked up silently.
type MismatchError struct {
	URL, Pinned, Got string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("%s: sha256 mismatch: the catalog pins %s but the download is %s; the file changed upstream (or in transit): review it and re-pin with `cnimatrix catalog update --write`", e.URL, e.Pinned, e.Got)
}

// HTTPError is a download answered with a status other than 200.
type HTTPError struct {
	URL        string
	StatusCode int
	Status     string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("GET %s: HTTP %s", e.URL, e.Status)
}

// defaultClient downloads over HTTP(S) and reads file:// URLs from the local
// file system (a mirror copied to disk answers like a server: 404 for a
// missing file).
var defaultClient = func() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.RegisterProtocol("file", http.NewFileTransport(http.Dir("/")))
	return &http.Client{Timeout: 2 * time.Minute, Transport: t}
}()

// ErrNotCached is returned by Cached when the pinned file is not on disk.
var ErrNotCached = errors.New("not in the manifest cache")

var hexRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

func (c *Cache) path(sum string) string { return filepath.Join(c.Dir, "sha256", sum) }

// Cached returns the cached file whose sum is pin, without any network. It
// re-hashes the file, so a corrupted cache entry is reported rather than
// applied.
func (c *Cache) Cached(url, pin string) (Result, error) {
	if pin == "" {
		return Result{}, fmt.Errorf("%s: not pinned, so no cached copy can be trusted: pin it with `cnimatrix catalog update --write` (needs the internet)", url)
	}
	if !hexRE.MatchString(pin) {
		return Result{}, fmt.Errorf("%s: pin %q is not a sha256 (64 hex digits)", url, pin)
	}
	p := c.path(pin)
	got, err := fileSum(p)
	if errors.Is(err, os.ErrNotExist) {
		return Result{}, fmt.Errorf("%s (sha256 %s) in %s: %w", url, pin, c.Dir, ErrNotCached)
	}
	if err != nil {
		return Result{}, fmt.Errorf("cached %s: %w", url, err)
	}
	if got != pin {
		return Result{}, fmt.Errorf("cached copy of %s at %s is corrupt: sha256 %s, want %s; delete it and fetch again", url, p, got, pin)
	}
	return Result{Path: p, SHA256: pin, FromCache: true}, nil
}

// Fetch returns url's file from the cache when its pin is cached, and
// downloads it otherwise. A download whose sum differs from a non-empty pin
// is a *MismatchError and is not cached. With an empty pin the file is
// downloaded every time (nothing says a cached copy is current) and the
// result carries a warning.
func (c *Cache) Fetch(ctx context.Context, url, pin string) (Result, error) {
	if pin != "" {
		r, err := c.Cached(url, pin)
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, ErrNotCached) {
			return Result{}, err
		}
	}
	tmp, sum, err := c.download(ctx, url)
	if err != nil {
		return Result{}, err
	}
	defer os.Remove(tmp)
	if pin != "" && sum != pin {
		return Result{}, &MismatchError{URL: url, Pinned: pin, Got: sum}
	}
	dst := c.path(sum)
	if err := os.Rename(tmp, dst); err != nil {
		return Result{}, fmt.Errorf("cache %s: %w", url, err)
	}
	r := Result{Path: dst, SHA256: sum}
	if pin == "" {
		r.Warning = fmt.Sprintf("%s is not pinned: downloaded sha256 %s; pin it in the catalog (`cnimatrix catalog update --write`) before trusting it", url, sum)
	}
	return r, nil
}

// download writes url's body to a temporary file in the cache (same file
// system, so the final rename is atomic) and returns its path and sum.
func (c *Cache) download(ctx context.Context, url string) (string, string, error) {
	if err := os.MkdirAll(filepath.Join(c.Dir, "sha256"), 0o755); err != nil {
		return "", "", fmt.Errorf("manifest cache: %w", err)
	}
	url = c.Source(url)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", "", fmt.Errorf("GET %s: %w", url, err)
	}
	client := c.Client
	if client == nil {
		client = defaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		// The client's error repeats the URL; say it once.
		var ue *neturl.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", "", fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", "", &HTTPError{URL: url, StatusCode: resp.StatusCode, Status: resp.Status}
	}
	f, err := os.CreateTemp(filepath.Join(c.Dir, "sha256"), ".download-*")
	if err != nil {
		return "", "", fmt.Errorf("manifest cache: %w", err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(resp.Body, maxSize+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > maxSize {
		err = fmt.Errorf("larger than %d MiB: not a manifest", maxSize>>20)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", "", fmt.Errorf("GET %s: %w", url, err)
	}
	return f.Name(), hex.EncodeToString(h.Sum(nil)), nil
}

// Sum is the sha256 of data, hex: what the catalog pins.
func Sum(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

func fileSum(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Join concatenates cached files into one multi-document manifest, cached
// under the sum of the parts, for releases whose install is several files
// applied in order (Calico v3.2: etcd.yaml, rbac.yaml, calico.yaml).
func (c *Cache) Join(parts []Result) (string, error) {
	if len(parts) == 1 {
		return parts[0].Path, nil
	}
	h := sha256.New()
	var all []byte
	for _, p := range parts {
		data, err := os.ReadFile(p.Path)
		if err != nil {
			return "", fmt.Errorf("join manifests: %w", err)
		}
		h.Write([]byte(p.SHA256))
		all = append(all, "---\n"...)
		all = append(all, data...)
		if len(data) > 0 && data[len(data)-1] != '\n' {
			all = append(all, '\n')
		}
	}
	dst := filepath.Join(c.Dir, "joined", hex.EncodeToString(h.Sum(nil))+".yaml")
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", fmt.Errorf("join manifests: %w", err)
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, all, 0o644); err != nil {
		return "", fmt.Errorf("join manifests: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return "", fmt.Errorf("join manifests: %w", err)
	}
	return dst, nil
}
