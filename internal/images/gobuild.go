package images

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/hostcmd"
)

// GoBuild describes Go main packages to build, from the Go module proxy, in a
// throwaway module: the repository's own go.mod is never involved.
type GoBuild struct {
	// Name names the cache entry (the architecture is appended), e.g. "etcd-v3.7.0".
	Name string
	// Requires maps module path to version; every package built must come
	// from one of these modules (or their dependencies) or from Files.
	Requires map[string]string
	// Replaces maps module path to "module@version".
	Replaces map[string]string
	// Packages are the import paths of the main packages to build.
	Packages []string
	// Binaries optionally renames outputs: package -> file name. By default a
	// binary is named as `go build` names it (last path element, skipping a
	// major-version suffix such as /v3).
	Binaries map[string]string
	// Files are extra source files of the throwaway module (path relative to
	// its root -> content), for mains of our own; their import path is
	// BuildModule + "/" + dir.
	Files map[string]string
	// Arch is the GOARCH; GOOS is always linux.
	Arch string
	// CGO sets CGO_ENABLED=1. Cross builds then need a cross C compiler.
	CGO bool
	// Tags are build tags.
	Tags []string
	// LDFlags are linker flags added after "-s -w" (e.g. "-X=pkg.var=value").
	LDFlags []string
}

// BuildModule is the module path of the throwaway module GoBuild writes.
const BuildModule = "cnimatrix.local/build"

// goBuildRecipe is bumped whenever goBuildInto changes what it produces, so
// that entries built by an older recipe are not reused.
const goBuildRecipe = "gobuild/v1"

// GoBuild builds b (once; later calls with the same inputs are cache hits)
// and returns a directory holding one binary per package, plus .module/
// with the go.mod and go.sum that record exactly which versions went in.
func (c *Cache) GoBuild(ctx context.Context, b GoBuild) (string, error) {
	if err := b.validate(); err != nil {
		return "", err
	}
	gover, err := goVersion()
	if err != nil {
		return "", err
	}
	key := Key(goBuildRecipe, gover, b)
	return c.DoLocked(ctx, "go", b.Name+"-"+b.Arch, key, func(ctx context.Context, dir string) error {
		return c.goBuildInto(ctx, b, dir)
	})
}

var (
	goBuildNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)
	archRe        = regexp.MustCompile(`^[a-z0-9]+$`)
)

func (b GoBuild) validate() error {
	switch {
	case !goBuildNameRe.MatchString(b.Name):
		return fmt.Errorf("go build: invalid name %q", b.Name)
	case !archRe.MatchString(b.Arch):
		return fmt.Errorf("go build %s: invalid arch %q", b.Name, b.Arch)
	case len(b.Packages) == 0:
		return fmt.Errorf("go build %s: no packages", b.Name)
	}
	for mod, repl := range b.Replaces {
		if _, _, ok := splitModVersion(repl); !ok {
			return fmt.Errorf("go build %s: replacement of %s is %q, want module@version", b.Name, mod, repl)
		}
	}
	for pkg, bin := range b.Binaries {
		if !goBuildNameRe.MatchString(bin) {
			return fmt.Errorf("go build %s: invalid binary name %q for %s", b.Name, bin, pkg)
		}
	}
	for f := range b.Files {
		if !filepath.IsLocal(f) || f == "go.mod" || f == "go.sum" {
			return fmt.Errorf("go build %s: invalid file name %q", b.Name, f)
		}
	}
	return nil
}

func splitModVersion(s string) (mod, version string, ok bool) {
	i := strings.LastIndex(s, "@")
	if i <= 0 || i == len(s)-1 {
		return "", "", false
	}
	return s[:i], s[i+1:], true
}

// goModFile renders the throwaway module's go.mod. goLine is the toolchain's
// version, so that no dependency can ask for a newer language than we run.
func goModFile(b GoBuild, goLine string) []byte {
	var s strings.Builder
	fmt.Fprintf(&s, "module %s\n\ngo %s\n", BuildModule, goLine)
	if len(b.Requires) > 0 {
		s.WriteString("\nrequire (\n")
		for _, mod := range sortedModKeys(b.Requires) {
			fmt.Fprintf(&s, "\t%s %s\n", mod, b.Requires[mod])
		}
		s.WriteString(")\n")
	}
	if len(b.Replaces) > 0 {
		s.WriteString("\nreplace (\n")
		for _, mod := range sortedModKeys(b.Replaces) {
			to, ver, _ := splitModVersion(b.Replaces[mod])
			fmt.Fprintf(&s, "\t%s => %s %s\n", mod, to, ver)
		}
		s.WriteString(")\n")
	}
	return []byte(s.String())
}

func sortedModKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

var versionElemRe = regexp.MustCompile(`^v[0-9]+$`)

// defaultBinaryName is the file name `go build -o dir/` gives a main package.
func defaultBinaryName(pkg string) string {
	elem := path.Base(pkg)
	if elem != pkg && versionElemRe.MatchString(elem) && elem != "v0" && elem != "v1" {
		elem = path.Base(path.Dir(pkg))
	}
	return elem
}

// binaryName is the file name pkg's binary gets in the output directory.
func binaryName(b GoBuild, pkg string) string {
	if n, ok := b.Binaries[pkg]; ok {
		return n
	}
	return defaultBinaryName(pkg)
}

// goBuildInto writes the throwaway module, builds every package into out and
// keeps the module's go.mod and go.sum in out/.module as a record of exactly
// which versions went in.
func (c *Cache) goBuildInto(ctx context.Context, b GoBuild, out string) (err error) {
	gover, err := goVersion()
	if err != nil {
		return err
	}
	var bins []string
	for _, pkg := range b.Packages {
		bins = append(bins, binaryName(b, pkg))
	}
	done := c.Log.Phase(fmt.Sprintf("go build %s linux/%s: %s", b.Name, b.Arch, strings.Join(bins, " ")))
	defer func() { done(err) }()

	tmpRoot := filepath.Join(c.Dir, "tmp")
	if err := os.MkdirAll(tmpRoot, 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp(tmpRoot, "gomod-"+b.Name+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if err := os.WriteFile(filepath.Join(work, "go.mod"), goModFile(b, goLine(gover)), 0o644); err != nil {
		return err
	}
	for name, content := range b.Files {
		p := filepath.Join(work, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}

	env, err := buildEnv(b)
	if err != nil {
		return err
	}
	args := []string{"build", "-trimpath",
		"-ldflags=" + strings.Join(append([]string{"-s", "-w"}, b.LDFlags...), " ")}
	if len(b.Tags) > 0 {
		args = append(args, "-tags="+strings.Join(b.Tags, ","))
	}
	args = append(args, "-o", out+string(filepath.Separator))
	args = append(args, b.Packages...)

	stop := c.heartbeat(fmt.Sprintf("go build %s linux/%s", b.Name, b.Arch))
	_, err = c.runGo(ctx, work, env, args...)
	stop()
	if err != nil {
		return err
	}

	for _, pkg := range b.Packages {
		def := filepath.Join(out, defaultBinaryName(pkg))
		if _, err := os.Stat(def); err != nil {
			return fmt.Errorf("binary of %s missing after build: %w", pkg, err)
		}
		if want := binaryName(b, pkg); want != defaultBinaryName(pkg) {
			if err := os.Rename(def, filepath.Join(out, want)); err != nil {
				return err
			}
		}
	}
	rec := filepath.Join(out, ".module")
	if err := os.MkdirAll(rec, 0o755); err != nil {
		return err
	}
	for _, f := range []string{"go.mod", "go.sum"} {
		data, err := os.ReadFile(filepath.Join(work, f))
		if f == "go.sum" && errors.Is(err, fs.ErrNotExist) {
			continue // a standard-library-only build has no go.sum
		}
		if err != nil {
			return fmt.Errorf("keep %s: %w", f, err)
		}
		if err := os.WriteFile(filepath.Join(rec, f), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// crossCC names the Debian cross compiler for a GOARCH.
var crossCC = map[string]string{
	"amd64":   "x86_64-linux-gnu-gcc",
	"arm64":   "aarch64-linux-gnu-gcc",
	"arm":     "arm-linux-gnueabihf-gcc",
	"ppc64le": "powerpc64le-linux-gnu-gcc",
	"s390x":   "s390x-linux-gnu-gcc",
	"riscv64": "riscv64-linux-gnu-gcc",
}

// buildEnv pins everything that decides what the go command produces, so a
// user's GOFLAGS, GOWORK or GOAMD64 cannot leak into cached binaries.
func buildEnv(b GoBuild) ([]string, error) {
	env := []string{
		"GOOS=linux",
		"GOARCH=" + b.Arch,
		// -mod=mod lets the build resolve and record go.sum entries for the
		// fresh module; a go.work above the cache must not join in.
		"GOFLAGS=-mod=mod -buildvcs=false",
		"GOWORK=off",
		// A dependency that wants a newer Go must fail clearly, not trigger
		// a toolchain download.
		"GOTOOLCHAIN=local",
		// Baseline instruction sets, so binaries run on any machine of the arch.
		"GOAMD64=v1",
		"GOARM64=v8.0",
	}
	if !b.CGO {
		return append(env, "CGO_ENABLED=0"), nil
	}
	env = append(env, "CGO_ENABLED=1")
	if b.Arch != runtime.GOARCH {
		cc, ok := crossCC[b.Arch]
		if !ok {
			return nil, fmt.Errorf("go build %s: no known C cross compiler for %s", b.Name, b.Arch)
		}
		if _, err := exec.LookPath(cc); err != nil {
			return nil, fmt.Errorf("go build %s: cgo for linux/%s needs %s (apt-get install gcc-%s): %w",
				b.Name, b.Arch, cc, strings.TrimSuffix(cc, "-gcc"), err)
		}
		env = append(env, "CC="+cc)
	}
	return env, nil
}

// heartbeat prints a line every minute while a long build runs, so a person
// watching knows it is alive.
func (c *Cache) heartbeat(what string) (stop func()) {
	t0 := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				c.Log.Infof("… %s still running (%s)", what, time.Since(t0).Truncate(time.Second))
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// runGo runs the go command in dir and returns its stdout (also on failure,
// where `go mod download -json` puts its Error). On failure the error carries
// the command and the tail of its output, which is where go puts the reason.
func (c *Cache) runGo(ctx context.Context, dir string, env []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, combined bytes.Buffer
	cmd.Stdout = io.MultiWriter(&stdout, &combined)
	cmd.Stderr = &combined
	if c.Log.Verbose() {
		cmd.Stderr = io.MultiWriter(&combined, c.Log.Writer())
	}
	c.Log.Debugf("(cd %s && %s go %s)", dir, strings.Join(env, " "), strings.Join(args, " "))
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return stdout.Bytes(), fmt.Errorf("go %s: %w", args[0], ctx.Err())
		}
		return stdout.Bytes(), fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, hostcmd.LastLines(combined.String(), 40))
	}
	return stdout.Bytes(), nil
}

// goVersion is the version of the go command on PATH (not of this binary):
// it is the one that builds, so it belongs in every key.
var goVersion = sync.OnceValues(func() (string, error) {
	out, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		return "", fmt.Errorf("find the go command (needed to build images): %w", err)
	}
	return strings.TrimSpace(string(out)), nil
})

var goLineRe = regexp.MustCompile(`go([0-9]+\.[0-9]+(\.[0-9]+)?)`)

// goLine turns "go1.26.8" into "1.26.8" for a go.mod go directive.
func goLine(goversion string) string {
	if m := goLineRe.FindStringSubmatch(goversion); m != nil {
		return m[1]
	}
	return strings.TrimPrefix(runtime.Version(), "go")
}

// moduleInfo asks the module proxy (through the go command, honouring
// GOPROXY) about one exact module version. A listed version set
// (`go list -m -versions`) is not authoritative: go.etcd.io/etcd/etcdctl/v3
// v3.7.0 is served though the proxy's list omits it.
func (c *Cache) moduleInfo(ctx context.Context, mod, version string) (*goModuleInfo, error) {
	// A module of its own, so that a go.mod above the cache (say, the
	// repository's when CNIMATRIX_CACHE points inside it) is never touched.
	dir := filepath.Join(c.Dir, "tmp", "query")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module cnimatrix.local/query\n"), 0o644); err != nil {
		return nil, err
	}
	out, err := c.runGo(ctx, dir, []string{"GOFLAGS=", "GOWORK=off", "GO111MODULE=on", "GOTOOLCHAIN=local"},
		"mod", "download", "-json", mod+"@"+version)
	var info goModuleInfo
	if len(out) > 0 {
		if jerr := json.Unmarshal(out, &info); jerr != nil {
			return nil, fmt.Errorf("parse go mod download output for %s@%s: %w", mod, version, jerr)
		}
	}
	if info.Error != "" {
		msg := strings.TrimPrefix(info.Error, mod+"@"+version+": ")
		return nil, fmt.Errorf("%s@%s is not available from the Go module proxy: %s", mod, version, msg)
	}
	if err != nil {
		return nil, fmt.Errorf("%s@%s is not available from the Go module proxy: %w", mod, version, err)
	}
	return &info, nil
}

// goModuleInfo is the part of `go mod download -json` output we use.
type goModuleInfo struct {
	Path    string
	Version string
	Info    string // path of the .info file
	GoMod   string // path of the .mod file
	Dir     string
	Error   string
}
