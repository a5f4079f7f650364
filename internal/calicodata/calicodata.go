// Package calicodata finds the upstream Calico data a machine may hold beside
// the source tree (../shared/calico in a development checkout): every
// manifest file of a range of Calico releases, byte for byte, laid out as a
// manifest mirror ($CNIMATRIX_MANIFEST_MIRROR layout) with a SHA256SUMS file,
// and Calico source archives. Tests check cnimatrix against those real files,
// and the image builder builds Calico from the archives; neither is ever
// copied into the project.
package calicodata

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Env names the directory explicitly; unset, Dir looks beside the source tree.
const Env = "CNIMATRIX_CALICO_DATA"

// RequireEnv, when set to a non-empty value (CI sets it), makes ForTest fail
// instead of skip when the data is missing: a test over real files must not
// pass by not running where the files are meant to be.
const RequireEnv = "CNIMATRIX_REQUIRE_CALICO_DATA"

// ManifestHost is the first path element of the mirror layout under
// manifests/: files are at <host>/projectcalico/calico/<tag>/manifests/<file>.
const ManifestHost = "raw.githubusercontent.com"

// Data is one located copy of the Calico data.
type Data struct {
	// Dir holds README.md, SHA256SUMS, manifests/ and src/.
	Dir string
	// Sums maps a manifest path relative to
	// manifests/raw.githubusercontent.com/projectcalico/calico/ (e.g.
	// "v3.32.1/manifests/calico.yaml") to its sha256.
	Sums map[string]string
}

// Find locates the data: $CNIMATRIX_CALICO_DATA, else shared/calico in the
// source tree's parent directory (root is the source tree). An error says
// where it looked.
func Find(root string) (*Data, error) {
	dir := os.Getenv(Env)
	if dir == "" {
		if root == "" {
			return nil, fmt.Errorf("no Calico data: $%s is unset and no source tree to look beside", Env)
		}
		dir = filepath.Join(filepath.Dir(root), "shared", "calico")
	}
	sums, err := readSums(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		return nil, fmt.Errorf("no Calico data at %s (set $%s): %w", dir, Env, err)
	}
	return &Data{Dir: dir, Sums: sums}, nil
}

// FindForTest returns the data for a test, or skips it with a message that
// says where it looked; under $CNIMATRIX_REQUIRE_CALICO_DATA it fails instead.
func FindForTest(t testing.TB, root string) *Data {
	t.Helper()
	d, err := Find(root)
	if err == nil {
		return d
	}
	if os.Getenv(RequireEnv) != "" {
		t.Fatalf("%v (and $%s is set: the real Calico files are required here)", err, RequireEnv)
	}
	t.Skipf("real Calico files not checked: %v", err)
	return nil
}

// MirrorDir is the directory to serve as $CNIMATRIX_MANIFEST_MIRROR.
func (d *Data) MirrorDir() string { return filepath.Join(d.Dir, "manifests") }

// ManifestPath is the local copy of a release's manifests/<file>.
func (d *Data) ManifestPath(tag, file string) string {
	return filepath.Join(d.MirrorDir(), ManifestHost, "projectcalico", "calico", tag, "manifests", file)
}

// Tags are the releases whose manifests the data holds, in SHA256SUMS order.
func (d *Data) Tags() []string {
	var tags []string
	seen := map[string]bool{}
	for _, p := range d.sortedPaths() {
		tag, _, _ := strings.Cut(p, "/")
		if !seen[tag] {
			seen[tag] = true
			tags = append(tags, tag)
		}
	}
	return tags
}

// Files are a release's manifest file names.
func (d *Data) Files(tag string) []string {
	var files []string
	for _, p := range d.sortedPaths() {
		if rest, ok := strings.CutPrefix(p, tag+"/manifests/"); ok {
			files = append(files, rest)
		}
	}
	return files
}

// SumFor is the sha256 SHA256SUMS gives a release's manifest file, "" if none.
func (d *Data) SumFor(tag, file string) string { return d.Sums[tag+"/manifests/"+file] }

// SourceArchive is the path of Calico's source archive of a release, or an
// error naming where it is missing.
func (d *Data) SourceArchive(tag string) (string, error) {
	p := filepath.Join(d.Dir, "src", "calico-"+tag+".tar.gz")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("calico %s source: %w", tag, err)
	}
	return p, nil
}

// Source is one Calico release's source archive and the libbpf source its
// Felix links against.
type Source struct {
	// Version is the release tag, e.g. v3.32.1.
	Version string
	// Archive is calico-<Version>.tar.gz: the tree under one top folder.
	Archive string
	// Libbpf is libbpf-<version>.tar.gz of the version the tree's
	// metadata.mk names (LIBBPF_VERSION).
	Libbpf string
}

// Source returns a release's sources, or an error naming what is missing.
func (d *Data) Source(tag string) (Source, error) {
	archive, err := d.SourceArchive(tag)
	if err != nil {
		return Source{}, err
	}
	ver, err := libbpfVersion(archive)
	if err != nil {
		return Source{}, err
	}
	lib, err := d.LibbpfArchive(ver)
	if err != nil {
		return Source{}, fmt.Errorf("calico %s needs %w", tag, err)
	}
	return Source{Version: tag, Archive: archive, Libbpf: lib}, nil
}

// libbpfVersion reads LIBBPF_VERSION from metadata.mk at the archive's top.
func libbpfVersion(archive string) (string, error) {
	f, err := os.Open(archive)
	if err != nil {
		return "", err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return "", fmt.Errorf("%s: %w", archive, err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return "", fmt.Errorf("%s: no metadata.mk at its top: not a Calico source release", archive)
		}
		if err != nil {
			return "", fmt.Errorf("%s: %w", archive, err)
		}
		if _, rest, _ := strings.Cut(strings.TrimPrefix(h.Name, "./"), "/"); rest != "metadata.mk" {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return "", fmt.Errorf("%s: metadata.mk: %w", archive, err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "LIBBPF_VERSION="); ok && v != "" {
				return strings.TrimSpace(v), nil
			}
		}
		return "", fmt.Errorf("%s: metadata.mk names no LIBBPF_VERSION", archive)
	}
}

// LibbpfArchive is the path of the libbpf source archive of a version.
func (d *Data) LibbpfArchive(version string) (string, error) {
	p := filepath.Join(d.Dir, "src", "libbpf-"+version+".tar.gz")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("libbpf %s source: %w", version, err)
	}
	return p, nil
}

func (d *Data) sortedPaths() []string {
	// SHA256SUMS is sorted by path already; keep a stable order regardless.
	paths := make([]string, 0, len(d.Sums))
	for p := range d.Sums {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	return paths
}

func readSums(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	sums := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		sum, p, ok := strings.Cut(line, "  ")
		if !ok || len(sum) != 64 || p == "" {
			return nil, fmt.Errorf("%s:%d: want \"<sha256>  <path>\", got %q", path, n, line)
		}
		sums[strings.TrimPrefix(p, "./")] = sum
	}
	if len(sums) == 0 {
		return nil, errors.New(path + ": no entries")
	}
	return sums, sc.Err()
}
