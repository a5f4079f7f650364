package images

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestParseAptSources(t *testing.T) {
	deb822 := `Types: deb deb-src
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 -----END PGP PUBLIC KEY BLOCK-----

Types: deb
Enabled: no
URIs: http://disabled.example/debian
Suites: bookworm
Components: main

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm
Components: main
`
	oneLine := `# comment
deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/debian bookworm stable
deb http://mirror.example/debian bookworm main # trailing
deb-src http://mirror.example/debian bookworm main
deb http://mirror.example/debian bookworm-backports main
`
	entries := append(parseDeb822Sources(deb822), parseOneLineSources(oneLine)...)
	got := fmt.Sprint(entries)
	want := "[{http://deb.debian.org/debian bookworm [main contrib]} {http://deb.debian.org/debian bookworm-updates [main contrib]} " +
		"{http://deb.debian.org/debian-security bookworm-security [main]} " +
		"{https://download.docker.com/linux/debian bookworm [stable]} {http://mirror.example/debian bookworm [main]} " +
		"{http://mirror.example/debian bookworm-backports [main]}]"
	if got != want {
		t.Errorf("entries:\n got %s\nwant %s", got, want)
	}
	lines := aptLinesForSuite(entries, "bookworm", "trixie")
	wantLines := []string{
		"deb http://deb.debian.org/debian trixie main",
		"deb http://deb.debian.org/debian trixie-updates main",
		"deb http://deb.debian.org/debian-security trixie-security main",
		"deb http://mirror.example/debian trixie main",
		"deb http://mirror.example/debian trixie-backports main",
	}
	if fmt.Sprint(lines) != fmt.Sprint(wantLines) {
		t.Errorf("lines:\n got %q\nwant %q", lines, wantLines)
	}
}

func TestDebianSourcesMirrorEnv(t *testing.T) {
	t.Setenv(MirrorEnv, "http://10.0.0.1/debian")
	got, err := debianSources("bookworm")
	if err != nil || fmt.Sprint(got) != "[deb http://10.0.0.1/debian bookworm main]" {
		t.Fatalf("%v %v", got, err)
	}
	spec, _ := normalizeRootfsSpec(RootfsSpec{Arch: "arm64", Variant: "extract", Packages: []string{"b", "a", "b"}})
	_, k1 := rootfsEntry(spec, got)
	t.Setenv(MirrorEnv, "http://10.0.0.2/debian")
	got2, _ := debianSources("bookworm")
	_, k2 := rootfsEntry(spec, got2)
	if k1 == k2 {
		t.Error("the mirror is not part of the rootfs key")
	}
	if fmt.Sprint(spec.Packages) != "[a b]" || spec.Suite != "bookworm" {
		t.Errorf("normalised spec %+v", spec)
	}
}

func TestRootfsSpecErrors(t *testing.T) {
	for _, s := range []RootfsSpec{
		{Arch: "amd64"},
		{Arch: "amd64", Variant: "buildd"},
		{Arch: "mips", Variant: "extract"},
		{Arch: "amd64", Variant: "extract", Packages: []string{"a,b"}},
	} {
		if _, err := normalizeRootfsSpec(s); err == nil {
			t.Errorf("%+v accepted", s)
		}
	}
}

// rootfsTarIndex reads a tarball's headers and the contents of the named
// regular files.
func rootfsTarIndex(t testing.TB, file string, want ...string) (map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hdrs := map[string]*tar.Header{}
	heads := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := ociCleanPath(h.Name)
		hdrs[p] = h
		for _, w := range want {
			if w == p {
				b, err := io.ReadAll(tr)
				if err != nil {
					t.Fatal(err)
				}
				heads[p] = b
			}
		}
	}
	return hdrs, heads
}

func rootfsELFMachine(t testing.TB, head []byte) elf.Machine {
	t.Helper()
	ef, err := elf.NewFile(bytes.NewReader(head))
	if err != nil {
		t.Fatalf("not ELF: %v", err)
	}
	return ef.Machine
}

// TestDebianRootfsExtractArm64 builds an arm64 tree without emulation and
// checks that the extract variant brought the dependencies along and that
// the binaries are aarch64.
func TestDebianRootfsExtractArm64(t *testing.T) {
	if testing.Short() {
		t.Skip("runs mmdebstrap against the Debian mirror")
	}
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		t.Skip("no mmdebstrap")
	}
	c := ociTestCache(t, DefaultCacheDir())
	spec := RootfsSpec{Arch: "arm64", Variant: "extract", Packages: []string{"dash", "nginx"}}
	t0 := time.Now()
	tarPath, err := c.DebianRootfs(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	first := time.Since(t0)
	t0 = time.Now()
	if again, err := c.DebianRootfs(context.Background(), spec); err != nil || again != tarPath {
		t.Fatalf("second call: %s %v", again, err)
	}
	fi, _ := os.Stat(tarPath)
	t.Logf("arm64 extract rootfs: first call %s, second %s, %d MB", first, time.Since(t0), fi.Size()>>20)

	hdrs, heads := rootfsTarIndex(t, tarPath, "usr/sbin/nginx", "usr/bin/dash", "usr/lib/aarch64-linux-gnu/libc.so.6")
	for _, link := range []string{"bin", "sbin", "lib"} {
		if h := hdrs[link]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "usr/"+link {
			t.Errorf("/%s is not a symlink to usr/%s: %+v", link, link, h)
		}
	}
	// Dependencies of nginx came along without being named.
	for _, dep := range []string{"usr/lib/aarch64-linux-gnu/libpcre2-8.so.0", "usr/lib/aarch64-linux-gnu/libssl.so.3", "etc/nginx/mime.types", "usr/bin/sh"} {
		if hdrs[dep] == nil {
			t.Errorf("%s missing: extract did not resolve dependencies", dep)
		}
	}
	for p, head := range heads {
		if m := rootfsELFMachine(t, head); m != elf.EM_AARCH64 {
			t.Errorf("%s is %s, not aarch64", p, m)
		}
	}
	if len(heads) != 3 {
		t.Errorf("found only %d of 3 binaries", len(heads))
	}
	// Not an essential package unless named: no coreutils here.
	if hdrs["usr/bin/cat"] != nil {
		t.Log("note: coreutils present without being named")
	}
	if b, err := os.ReadFile(strings.TrimSuffix(tarPath, "rootfs.tar") + "mmdebstrap.log"); err != nil || !bytes.Contains(b, []byte("mmdebstrap")) {
		t.Errorf("no mmdebstrap.log kept: %v", err)
	}
}
