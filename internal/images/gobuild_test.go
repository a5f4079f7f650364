package images

import (
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/hostcmd"
	"github.com/cnimatrix/cnimatrix/internal/logx"
	"github.com/cnimatrix/cnimatrix/internal/repo"
)

func TestGoModFile(t *testing.T) {
	b := GoBuild{
		Name:     "x",
		Requires: map[string]string{"k8s.io/kubernetes": "v1.37.2", "a.example/m": "v1.0.0"},
		Replaces: map[string]string{"k8s.io/api": "k8s.io/api@v0.37.2"},
	}
	want := `module cnimatrix.local/build

go 1.26.8

require (
	a.example/m v1.0.0
	k8s.io/kubernetes v1.37.2
)

replace (
	k8s.io/api => k8s.io/api v0.37.2
)
`
	if got := string(goModFile(b, "1.26.8")); got != want {
		t.Errorf("goModFile:\n%s\nwant:\n%s", got, want)
	}
}

func TestGoLine(t *testing.T) {
	for in, want := range map[string]string{
		"go1.26.8":                      "1.26.8",
		"go1.27rc1":                     "1.27",
		"go1.26.8 X:nocoverageredesign": "1.26.8",
	} {
		if got := goLine(in); got != want {
			t.Errorf("goLine(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDefaultBinaryName(t *testing.T) {
	for pkg, want := range map[string]string{
		"sigs.k8s.io/cri-tools/cmd/crictl": "crictl",
		"go.etcd.io/etcd/server/v3":        "server",
		"github.com/coredns/coredns":       "coredns",
		"example.com/tool/v1":              "v1",
		"v2":                               "v2",
	} {
		if got := defaultBinaryName(pkg); got != want {
			t.Errorf("defaultBinaryName(%q) = %q, want %q", pkg, got, want)
		}
	}
}

func TestGoBuildValidate(t *testing.T) {
	ok := GoBuild{Name: "crictl-v1.37.0", Arch: "arm64", Packages: []string{"p"}}
	if err := ok.validate(); err != nil {
		t.Fatalf("valid build rejected: %v", err)
	}
	for name, b := range map[string]GoBuild{
		"no name":     {Arch: "amd64", Packages: []string{"p"}},
		"slash name":  {Name: "a/b", Arch: "amd64", Packages: []string{"p"}},
		"no arch":     {Name: "a", Packages: []string{"p"}},
		"no packages": {Name: "a", Arch: "amd64"},
		"bad replace": {Name: "a", Arch: "amd64", Packages: []string{"p"}, Replaces: map[string]string{"m": "m"}},
		"escape file": {Name: "a", Arch: "amd64", Packages: []string{"p"}, Files: map[string]string{"../x.go": ""}},
		"bad binary":  {Name: "a", Arch: "amd64", Packages: []string{"p"}, Binaries: map[string]string{"p": "../etcd"}},
		"go.mod file": {Name: "a", Arch: "amd64", Packages: []string{"p"}, Files: map[string]string{"go.mod": ""}},
	} {
		if err := b.validate(); err == nil {
			t.Errorf("%s: accepted %+v", name, b)
		}
	}
}

// Keys must not depend on map iteration order, and must change with any input.
func TestGoBuildKeyStability(t *testing.T) {
	mk := func() GoBuild {
		b := GoBuild{Name: "n", Arch: "amd64", Packages: []string{"p"}, Requires: map[string]string{}, Replaces: map[string]string{}}
		for _, m := range []string{"k8s.io/api", "k8s.io/apimachinery", "k8s.io/client-go", "k8s.io/kubelet"} {
			b.Requires[m] = "v0.37.2"
			b.Replaces[m] = m + "@v0.37.2"
		}
		return b
	}
	base := Key(goBuildRecipe, "go1.26.8", mk())
	for range 20 {
		if k := Key(goBuildRecipe, "go1.26.8", mk()); k != base {
			t.Fatalf("key of equal inputs changed: %s vs %s", k, base)
		}
	}
	variants := map[string]func(*GoBuild){
		"arch":    func(b *GoBuild) { b.Arch = "arm64" },
		"cgo":     func(b *GoBuild) { b.CGO = true },
		"tags":    func(b *GoBuild) { b.Tags = []string{"no_btrfs"} },
		"ldflags": func(b *GoBuild) { b.LDFlags = []string{"-X=a.b=c"} },
		"require": func(b *GoBuild) { b.Requires["k8s.io/api"] = "v0.37.3" },
		"files":   func(b *GoBuild) { b.Files = map[string]string{"p/main.go": "package main"} },
	}
	for name, change := range variants {
		b := mk()
		change(&b)
		if Key(goBuildRecipe, "go1.26.8", b) == base {
			t.Errorf("key unchanged when %s changes", name)
		}
	}
	if Key(goBuildRecipe, "go1.27.0", mk()) == base {
		t.Errorf("key unchanged when the go toolchain changes")
	}
}

func TestTail(t *testing.T) {
	s := strings.Repeat("x\n", 50) + "last\n"
	got := hostcmd.LastLines(s, 3)
	if !strings.HasSuffix(got, "x\nx\nlast") || !strings.HasPrefix(got, "... (48 lines before)") {
		t.Errorf("tail = %q", got)
	}
	if hostcmd.LastLines("a\nb\n", 5) != "a\nb" {
		t.Errorf("short tail = %q", hostcmd.LastLines("a\nb\n", 5))
	}
}

func TestRepoRoot(t *testing.T) {
	root, err := repo.Root()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "internal", "images", "pause", "main.go")); err != nil {
		t.Errorf("repo.Root() = %s, which lacks internal/images/pause/main.go: %v", root, err)
	}
	t.Setenv("CNIMATRIX_ROOT", t.TempDir())
	if _, err := repo.Root(); err == nil {
		t.Errorf("CNIMATRIX_ROOT pointing at an empty directory was accepted")
	}
}

// goBuildTestCache opens the shared cache, so real builds run once per machine, not
// once per test run.
func goBuildTestCache(t *testing.T) *Cache {
	t.Helper()
	c, err := NewCache(DefaultCacheDir(), logx.New(tlogWriter{t}, testing.Verbose()))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// elfMachine returns the ELF machine of every regular non-hidden file in dir.
func elfMachines(t *testing.T, dir string) map[string]elf.Machine {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]elf.Machine{}
	for _, e := range entries {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		f, err := elf.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Errorf("%s: %v", e.Name(), err)
			continue
		}
		out[e.Name()] = f.Machine
		f.Close()
	}
	return out
}

var elfMachineOfArch = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// buildTwice runs build cold (or warm, if an earlier run cached it), then
// again, which must be a cache hit that returns in well under a second.
func buildTwice(t *testing.T, what string, build func() (string, error)) string {
	t.Helper()
	t0 := time.Now()
	dir, err := build()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	first := time.Since(t0)
	t0 = time.Now()
	dir2, err := build()
	second := time.Since(t0)
	if err != nil || dir2 != dir {
		t.Fatalf("%s again: %q, %v (first gave %q)", what, dir2, err, dir)
	}
	t.Logf("%s: first call %s, second call %s -> %s", what, first.Round(time.Millisecond), second.Round(time.Microsecond), dir)
	if second > 500*time.Millisecond {
		t.Errorf("%s: cached call took %s", what, second)
	}
	return dir
}

func TestCrictlAndPauseArm64(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Go binaries (tens of seconds cold)")
	}
	c := goBuildTestCache(t)
	ctx := context.Background()
	for what, build := range map[string]func() (string, error){
		"crictl": func() (string, error) { return c.Crictl(ctx, "arm64") },
		"pause":  func() (string, error) { return c.Pause(ctx, "arm64") },
	} {
		dir := buildTwice(t, what+" arm64", build)
		m := elfMachines(t, dir)
		if len(m) != 1 || m[what] != elf.EM_AARCH64 {
			t.Errorf("%s arm64: binaries %v, want just %s with EM_AARCH64", what, m, what)
		}
	}
}

func TestPauseRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs pause")
	}
	c := goBuildTestCache(t)
	dir, err := c.Pause(context.Background(), runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "pause")
	out, err := exec.Command(bin, "-v").Output()
	if err != nil || strings.TrimSpace(string(out)) != "cnimatrix pause "+PauseVersion {
		t.Errorf("pause -v = %q, %v", out, err)
	}
	// A SIGINT that lands while the Go runtime is still starting (before
	// pause's signal.Notify) kills it by default action; SigCgt cannot tell
	// that moment apart, since the runtime catches every signal from the
	// start. So a death by SIGINT is retried; only a pause that never exits 0
	// on SIGINT fails.
	var lastErr error
	for attempt := 1; attempt <= 5; attempt++ {
		cmd := exec.Command(bin)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "pause to handle SIGINT", func() bool { return catches(cmd.Process.Pid, syscall.SIGINT) })
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err == nil {
				return
			}
			lastErr = err
			t.Logf("attempt %d: pause after SIGINT: %v (signal during start-up)", attempt, err)
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatal("pause ignored SIGINT")
		}
	}
	t.Errorf("pause after SIGINT: %v, want exit 0", lastErr)
}
