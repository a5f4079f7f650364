// Package images builds, offline, every image a scenario needs: Kubernetes
// binaries, kind node images, workload and CNI images, and serves them from a
// local registry. Every product is cached under a key derived from its inputs.
//
// Its tests run the built workload images in Docker with testcontainers-go
// (start, wait for the HTTP port, exec, remove), with the reaper off: the
// reaper is an image pulled from Docker Hub, which no machine here reaches.
// The registry is not a container but Go in the test's process
// (StartRegistry), so nothing there is for testcontainers to run.
package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/cnimatrix/cnimatrix/internal/logx"
)

// Cache is the content-keyed build cache shared by all builders.
type Cache struct {
	Dir string
	Log *logx.Logger
}

// DefaultCacheDir is $CNIMATRIX_CACHE, else $XDG_CACHE_HOME/cnimatrix, else ~/.cache/cnimatrix.
func DefaultCacheDir() string {
	if d := os.Getenv("CNIMATRIX_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "cnimatrix")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "cnimatrix-cache")
	}
	return filepath.Join(home, ".cache", "cnimatrix")
}

// NewCache opens (creating) a cache at dir.
func NewCache(dir string, log *logx.Logger) (*Cache, error) {
	if log == nil {
		log = logx.Discard()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create cache %s: %w", dir, err)
	}
	return &Cache{Dir: dir, Log: log}, nil
}

// Key hashes the JSON encoding of inputs (plus the Go version, since every
// product is built with it) into a short stable key.
func Key(inputs ...any) string {
	h := sha256.New()
	enc := json.NewEncoder(h)
	_ = enc.Encode(runtime.Version())
	for _, in := range inputs {
		_ = enc.Encode(in)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Do returns the directory kind/name-key, building it with build when it is
// not complete yet. build writes into a temporary directory that is renamed
// into place only on success, so an interrupted build is never mistaken for a
// cached one.
func (c *Cache) Do(ctx context.Context, kind, name, key string, build func(ctx context.Context, dir string) error) (string, error) {
	final := filepath.Join(c.Dir, kind, name+"-"+key)
	if _, err := os.Stat(filepath.Join(final, ".complete")); err == nil {
		c.Log.Debugf("cache hit %s/%s", kind, filepath.Base(final))
		return final, nil
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(final), ".tmp-"+name+"-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := build(ctx, tmp); err != nil {
		return "", fmt.Errorf("build %s %s: %w", kind, name, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), []byte(key+"\n"), 0o644); err != nil {
		return "", err
	}
	_ = os.RemoveAll(final)
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("store %s: %w", final, err)
	}
	return final, nil
}
