package catalog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"gopkg.in/yaml.v3"
)

// Pin provenance, as a run records it for the manifest it applied.
const (
	// PinCatalog: the catalog (embedded in cnimatrix) pins the file.
	PinCatalog = "pinned"
	// PinTrustedOnFirstUse: the user's lock file pins it, with the sum the
	// first download had (`cnimatrix catalog update --lock`): later
	// downloads must match it, but nothing vouched for the first one.
	PinTrustedOnFirstUse = "trusted-on-first-use"
)

// LockEnv names the lock file explicitly; unset, DefaultLockPath.
const LockEnv = "CNIMATRIX_PINS"

// DefaultLockPath is $CNIMATRIX_PINS, else pins.lock in the user's config
// directory (~/.config/cnimatrix/pins.lock).
func DefaultLockPath() string {
	if p := os.Getenv(LockEnv); p != "" {
		return p
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "cnimatrix", "pins.lock")
}

// Lock is the user's trust-on-first-use pins of files the catalog does not
// pin: URL -> sha256. A file in it is applied only with those bytes.
type Lock struct {
	Path string
	Pins map[string]string
}

type lockFile struct {
	Pins map[string]string `yaml:"pins"`
}

// LoadLock reads the lock at path; a missing file is an empty lock.
func LoadLock(path string) (*Lock, error) {
	l := &Lock{Path: path, Pins: map[string]string{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pins lock: %w", err)
	}
	var f lockFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for u, p := range f.Pins {
		if !sha256RE.MatchString(p) {
			return nil, fmt.Errorf("%s: pin of %s is %q, not a sha256", path, u, p)
		}
		l.Pins[u] = p
	}
	return l, nil
}

// Pin returns the pin of f and where it comes from: the catalog's, else
// the lock's, else "" (not pinned).
func (l *Lock) Pin(f RemoteFile) (sum, provenance string) {
	if f.Pinned() {
		return f.SHA256, PinCatalog
	}
	if l != nil {
		if p := l.Pins[f.URL]; p != "" {
			return p, PinTrustedOnFirstUse
		}
	}
	return "", ""
}

// Write saves the lock, sorted, with a header saying what it is.
func (l *Lock) Write() error {
	var b bytes.Buffer
	b.WriteString("# cnimatrix trust-on-first-use pins (`cnimatrix catalog update --lock`): files the\n" +
		"# catalog does not pin, with the sha256 their first download had. A run applies them\n" +
		"# only with these bytes and records them as trusted-on-first-use, not pinned.\n")
	b.WriteString("pins:\n")
	for _, u := range slices.Sorted(maps.Keys(l.Pins)) {
		fmt.Fprintf(&b, "  %q: %q\n", u, l.Pins[u])
	}
	if err := os.MkdirAll(filepath.Dir(l.Path), 0o755); err != nil {
		return fmt.Errorf("pins lock: %w", err)
	}
	tmp := l.Path + ".tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("pins lock: %w", err)
	}
	return os.Rename(tmp, l.Path)
}
