package images

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cnimatrix/cnimatrix/internal/hostcmd"
)

// RootfsSpec says which Debian root filesystem to build.
type RootfsSpec struct {
	// Arch is a Go architecture name (amd64, arm64, ...).
	Arch string
	// Suite is the Debian release, e.g. bookworm. Empty means bookworm.
	Suite string
	// Variant is "minbase" (a real installation whose maintainer scripts
	// run, so only for an architecture the host can execute) or "extract"
	// (the packages named in Packages and their dependencies are unpacked
	// and nothing runs: any architecture, no emulation, but also none of
	// the files maintainer scripts would create, such as /etc/passwd or
	// the alternatives symlinks). Essential packages are not pulled in by
	// extract: name dash, coreutils, ... when the image needs them.
	Variant string
	// Packages are installed (minbase) or unpacked (extract) in addition
	// to the variant's own set.
	Packages []string
}

// rootfsRecipe changes whenever DebianRootfs changes what it produces, so
// older cached tarballs are not reused.
const rootfsRecipe = "debian-rootfs/v1"

// rootfsEpoch pins the timestamps mmdebstrap writes (SOURCE_DATE_EPOCH), so
// a rebuild from the same packages yields the same tarball and layer digest.
const rootfsEpoch = "1700000000"

// DefaultDebianSuite is the release the workload and base images come from.
const DefaultDebianSuite = "bookworm"

// DebianRootfs returns the path of an uncompressed tarball of the root
// filesystem described by spec, built with mmdebstrap and cached under a key
// of every input, the apt sources included. The tarball has merged /usr
// (/bin, /sbin and /lib are symlinks into /usr) whatever the variant, and
// contains /dev entries as mmdebstrap writes them: LayerFromTarball users
// that want none go through a filter (see rootfsLayer).
func (c *Cache) DebianRootfs(ctx context.Context, spec RootfsSpec) (string, error) {
	spec, err := normalizeRootfsSpec(spec)
	if err != nil {
		return "", err
	}
	sources, err := debianSources(spec.Suite)
	if err != nil {
		return "", err
	}
	name, key := rootfsEntry(spec, sources)
	dir, err := c.DoLocked(ctx, "rootfs", name, key, func(ctx context.Context, dir string) error {
		done := c.Log.Phase(fmt.Sprintf("debian rootfs %s/%s %s [%s]", spec.Suite, spec.Arch, spec.Variant, strings.Join(spec.Packages, ",")))
		err := runMmdebstrap(ctx, c, spec, sources, dir)
		done(err)
		return err
	})
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "rootfs.tar"), nil
}

// rootfsEntry is the cache entry (name, key) of a normalised spec.
func rootfsEntry(spec RootfsSpec, sources []string) (name, key string) {
	name = fmt.Sprintf("%s-%s-%s", spec.Suite, spec.Arch, spec.Variant)
	return name, Key(rootfsRecipe, spec, sources)
}

func normalizeRootfsSpec(spec RootfsSpec) (RootfsSpec, error) {
	if spec.Suite == "" {
		spec.Suite = DefaultDebianSuite
	}
	if _, err := debianArch(spec.Arch); err != nil {
		return spec, err
	}
	switch spec.Variant {
	case "minbase", "extract":
	case "":
		return spec, fmt.Errorf("debian rootfs %s/%s: no variant (minbase or extract)", spec.Suite, spec.Arch)
	default:
		return spec, fmt.Errorf("debian rootfs %s/%s: unsupported variant %q (minbase or extract)", spec.Suite, spec.Arch, spec.Variant)
	}
	pkgs := slices.Clone(spec.Packages)
	slices.Sort(pkgs)
	spec.Packages = slices.Compact(pkgs)
	for _, p := range spec.Packages {
		if p == "" || strings.ContainsAny(p, ", \t\n") {
			return spec, fmt.Errorf("debian rootfs %s/%s: bad package name %q", spec.Suite, spec.Arch, p)
		}
	}
	return spec, nil
}

// debianArch maps a Go architecture name to Debian's.
func debianArch(goarch string) (string, error) {
	switch goarch {
	case "amd64", "arm64", "riscv64", "s390x":
		return goarch, nil
	case "arm":
		return "armhf", nil
	case "386":
		return "i386", nil
	case "ppc64le":
		return "ppc64el", nil
	case "":
		return "", fmt.Errorf("no architecture given")
	}
	return "", fmt.Errorf("unsupported architecture %q", goarch)
}

// runMmdebstrap builds dir/rootfs.tar and keeps mmdebstrap's output in
// dir/mmdebstrap.log for later questions about what went in.
func runMmdebstrap(ctx context.Context, c *Cache, spec RootfsSpec, sources []string, dir string) error {
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		return fmt.Errorf("mmdebstrap not found (apt-get install mmdebstrap): %w", err)
	}
	darch, _ := debianArch(spec.Arch)
	args := []string{
		"--verbose",
		"--variant=" + spec.Variant,
		"--arch=" + darch,
		"--format=tar",
		// Merged /usr like every Debian since bookworm; in the extract
		// variant no package script would set it up.
		"--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
		`--aptopt=Acquire::Retries "3"`,
	}
	if len(spec.Packages) > 0 {
		args = append(args, "--include="+strings.Join(spec.Packages, ","))
	}
	args = append(args, spec.Suite, filepath.Join(dir, "rootfs.tar"))
	args = append(args, sources...)

	logf, err := os.Create(filepath.Join(dir, "mmdebstrap.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "$ mmdebstrap %s\n", strings.Join(args, " "))
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "mmdebstrap", args...)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+rootfsEpoch)
	cmd.Stdout = logf
	cmd.Stderr = &out
	if c.Log.Verbose() {
		cmd.Stderr = &rootfsTee{&out, c.Log.Writer()}
	}
	err = cmd.Run()
	_, _ = logf.Write(out.Bytes())
	if err != nil {
		return fmt.Errorf("mmdebstrap %s/%s %s: %w\n%s", spec.Suite, darch, spec.Variant, err, hostcmd.LastLines(out.String(), 25))
	}
	return nil
}

type rootfsTee struct {
	a, b io.Writer
}

func (t *rootfsTee) Write(p []byte) (int, error) {
	_, _ = t.b.Write(p)
	return t.a.Write(p)
}

// MirrorEnv overrides the Debian mirror taken from the host's apt sources.
const MirrorEnv = "CNIMATRIX_DEBIAN_MIRROR"

// debianSources returns one-line apt sources ("deb URI SUITE main") for
// suite. With $CNIMATRIX_DEBIAN_MIRROR set that mirror alone is used;
// otherwise the host's own Debian sources are reused with their codename
// replaced by suite, so a host that can install packages can build images,
// security and updates suites included. Only the main component is taken:
// third-party repositories on the host name other components.
func debianSources(suite string) ([]string, error) {
	if m := strings.TrimSpace(os.Getenv(MirrorEnv)); m != "" {
		return []string{fmt.Sprintf("deb %s %s main", m, suite)}, nil
	}
	entries, err := hostAptSources("/etc/apt")
	if err != nil {
		return nil, err
	}
	lines := aptLinesForSuite(entries, hostCodename(entries), suite)
	if len(lines) == 0 {
		return []string{fmt.Sprintf("deb http://deb.debian.org/debian %s main", suite)}, nil
	}
	return lines, nil
}

// aptSource is one (URI, suite) pair of the host's apt configuration.
type aptSource struct {
	URI        string
	Suite      string
	Components []string
}

// aptLinesForSuite keeps the entries whose suite is codename or
// codename-<pocket> and that carry main, and rewrites them for suite.
func aptLinesForSuite(entries []aptSource, codename, suite string) []string {
	var lines []string
	for _, e := range entries {
		if codename == "" || !slices.Contains(e.Components, "main") {
			continue
		}
		pocket, ok := strings.CutPrefix(e.Suite, codename)
		if !ok || (pocket != "" && !strings.HasPrefix(pocket, "-")) {
			continue
		}
		l := fmt.Sprintf("deb %s %s%s main", e.URI, suite, pocket)
		if !slices.Contains(lines, l) {
			lines = append(lines, l)
		}
	}
	return lines
}

// hostCodename is the release the host's sources are for: /etc/os-release's
// VERSION_CODENAME, else the shortest suite name among the entries.
func hostCodename(entries []aptSource) string {
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "VERSION_CODENAME="); ok && strings.Trim(v, `"`) != "" {
				return strings.Trim(v, `"`)
			}
		}
	}
	best := ""
	for _, e := range entries {
		if best == "" || len(e.Suite) < len(best) {
			best = e.Suite
		}
	}
	return best
}

// hostAptSources reads deb822 (*.sources) and one-line (sources.list,
// *.list) apt sources under root, binary ("deb") entries only.
func hostAptSources(root string) ([]aptSource, error) {
	var out []aptSource
	files := []string{filepath.Join(root, "sources.list")}
	more, _ := filepath.Glob(filepath.Join(root, "sources.list.d", "*.list"))
	files = append(files, more...)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if os.IsNotExist(err) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("read apt sources: %w", err)
		}
		out = append(out, parseOneLineSources(string(b))...)
	}
	deb822, _ := filepath.Glob(filepath.Join(root, "sources.list.d", "*.sources"))
	for _, f := range deb822 {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read apt sources: %w", err)
		}
		out = append(out, parseDeb822Sources(string(b))...)
	}
	return out, nil
}

func parseOneLineSources(text string) []aptSource {
	var out []aptSource
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") { // options: [arch=amd64 signed-by=...]
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) > 0 {
				f = f[1:]
			}
		}
		if len(f) < 2 {
			continue
		}
		out = append(out, aptSource{URI: f[0], Suite: f[1], Components: f[2:]})
	}
	return out
}

func parseDeb822Sources(text string) []aptSource {
	var out []aptSource
	flush := func(st map[string]string) {
		if strings.EqualFold(st["enabled"], "no") || !slices.Contains(strings.Fields(st["types"]), "deb") {
			return
		}
		for _, uri := range strings.Fields(st["uris"]) {
			for _, suite := range strings.Fields(st["suites"]) {
				out = append(out, aptSource{URI: uri, Suite: suite, Components: strings.Fields(st["components"])})
			}
		}
	}
	st := map[string]string{}
	last := ""
	for _, raw := range strings.Split(text, "\n") {
		if strings.HasPrefix(raw, "#") {
			continue
		}
		if strings.TrimSpace(raw) == "" {
			flush(st)
			st, last = map[string]string{}, ""
			continue
		}
		if (raw[0] == ' ' || raw[0] == '\t') && last != "" {
			st[last] += " " + strings.TrimSpace(raw)
			continue
		}
		k, v, ok := strings.Cut(raw, ":")
		if !ok {
			continue
		}
		last = strings.ToLower(strings.TrimSpace(k))
		st[last] = strings.TrimSpace(v)
	}
	flush(st)
	return out
}
