package images

import (
	"archive/tar"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/moby/moby/api/types/container"
	"github.com/testcontainers/testcontainers-go"
	tcexec "github.com/testcontainers/testcontainers-go/exec"
	tclog "github.com/testcontainers/testcontainers-go/log"
	"github.com/testcontainers/testcontainers-go/wait"
)

// TestWorkloadScriptsParse runs the shell's syntax check over the scripts
// the images carry.
func TestWorkloadScriptsParse(t *testing.T) {
	sh, err := exec.LookPath("dash")
	if err != nil {
		if sh, err = exec.LookPath("sh"); err != nil {
			t.Skip("no shell")
		}
	}
	for name, script := range map[string]string{"iptables-wrapper": iptablesWrapper, "nginx-workload": nginxEntrypoint} {
		f := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(f, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(sh, "-n", f).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", name, err, out)
		}
	}
}

// TestWorkloadKeysAreStable guards the warm path: keys must not depend on
// map order or on anything but the inputs.
func TestWorkloadKeysAreStable(t *testing.T) {
	for _, w := range workloadImages() {
		_, k1, err := rootfsLayerKey(w.spec("arm64"), w.files)
		if err != nil {
			t.Fatal(err)
		}
		_, k2, _ := rootfsLayerKey(w.spec("arm64"), workloadImagesByRef(t, w.ref).files)
		_, k3, _ := rootfsLayerKey(w.spec("amd64"), w.files)
		if k1 != k2 || k1 == k3 {
			t.Errorf("%s: keys %s %s %s", w.ref, k1, k2, k3)
		}
	}
}

func workloadImagesByRef(t *testing.T, ref string) workloadImage {
	for _, w := range workloadImages() {
		if w.ref == ref {
			return w
		}
	}
	t.Fatalf("no workload %s", ref)
	return workloadImage{}
}

func workloadTestCache(t *testing.T) *Cache {
	if testing.Short() {
		t.Skip("builds Debian root filesystems")
	}
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		t.Skip("no mmdebstrap")
	}
	return ociTestCache(t, DefaultCacheDir())
}

func TestWorkloadImagesBuild(t *testing.T) {
	c := workloadTestCache(t)
	ctx := context.Background()
	t0 := time.Now()
	imgs, err := c.WorkloadImages(ctx, []string{"arm64", "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	first := time.Since(t0)
	t0 = time.Now()
	if _, err := c.WorkloadImages(ctx, []string{"amd64", "arm64"}); err != nil {
		t.Fatal(err)
	}
	t.Logf("WorkloadImages: first call %s, second (warm) %s", first, time.Since(t0))
	s, _ := c.Store()
	for _, ref := range []string{NginxImage, ProbeImage} {
		ii := imgs[ref]
		if ii == nil || !s.Has(ref) {
			t.Fatalf("%s not built or not stored", ref)
		}
		if err := validate.Index(ii, validate.Fast); err != nil {
			t.Errorf("%s: %v", ref, err)
		}
		for _, arch := range []string{"amd64", "arm64"} {
			img, err := ImageForPlatform(ii, arch)
			if err != nil {
				t.Fatalf("%s: %v", ref, err)
			}
			ls, _ := img.Layers()
			size, _ := ls[0].Size()
			d, _ := img.Digest()
			t.Logf("%s %s: %s, layer %.1f MB compressed", ref, arch, d.String()[:19], float64(size)/1e6)
		}
	}
	// The nginx layer is self-contained and has what nginx needs at runtime.
	img, _ := ImageForPlatform(imgs[NginxImage], "arm64")
	ls, _ := img.Layers()
	rc, _ := ls[0].Uncompressed()
	defer rc.Close()
	seen := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seen[ociCleanPath(h.Name)] = h
	}
	for _, p := range []string{"usr/sbin/nginx", "usr/bin/sh", "etc/passwd", "etc/nginx/mime.types", "var/log/nginx", "run", "usr/local/bin/nginx-workload", "bin"} {
		if seen[p] == nil {
			t.Errorf("nginx image lacks /%s", p)
		}
	}
	for p := range seen {
		if strings.HasPrefix(p, "dev/") || strings.HasPrefix(p, "usr/share/man/") {
			t.Errorf("nginx image has /%s", p)
		}
	}
}

// workloadDockerRun runs docker and returns its trimmed combined output.
func workloadDockerRun(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func workloadNeedDocker(t *testing.T) {
	if err := exec.Command("docker", "info").Run(); err != nil {
		t.Skipf("no Docker engine: %v", err)
	}
}

// publishedOnLoopback makes testcontainers-go reach published ports on
// 127.0.0.1 when the Docker engine runs on this machine. Seeing /.dockerenv
// (which a machine image built from a container image keeps), it would
// otherwise think the tests run in a container beside the engine and dial
// the default gateway, where nothing listens. A TESTCONTAINERS_HOST_OVERRIDE
// set by the user wins.
func publishedOnLoopback(t *testing.T) {
	if _, set := os.LookupEnv("TESTCONTAINERS_HOST_OVERRIDE"); set {
		return
	}
	if h := os.Getenv("DOCKER_HOST"); h != "" && !strings.HasPrefix(h, "unix://") {
		return
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/comm")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == "dockerd" {
			t.Setenv("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
			return
		}
	}
}

// workloadLoad loads the arch variant of ii into Docker under tag.
func workloadLoad(t *testing.T, c *Cache, ii v1.ImageIndex, arch, tag string) {
	t.Helper()
	img, err := ImageForPlatform(ii, arch)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := DockerLoad(context.Background(), tag, img, c.Log); err != nil {
		t.Fatal(err)
	}
	t.Logf("DockerLoad %s: %s", tag, time.Since(t0).Truncate(time.Millisecond))
}

// TestWorkloadImagesInDocker runs both architectures of nginx and probe:
// arm64 under qemu-user (binfmt), which shows the binaries are complete.
// The containers are run by testcontainers-go (started, waited for,
// exec'd into, removed when the test ends) from the images loaded into
// Docker; its reaper is off, being an image no registry here can serve.
func TestWorkloadImagesInDocker(t *testing.T) {
	c := workloadTestCache(t)
	workloadNeedDocker(t)
	t.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	publishedOnLoopback(t)
	imgs, err := c.WorkloadImages(context.Background(), []string{"amd64", "arm64"})
	if err != nil {
		t.Fatal(err)
	}
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run("nginx-"+arch, func(t *testing.T) {
			ctx := context.Background()
			tag := "docker.io/cnimatrix/nginx:test-" + arch
			workloadLoad(t, c, imgs[NginxImage], arch, tag)
			host := "nginx-pod-" + arch
			t0 := time.Now()
			// The arm64 container starts slowly under emulation.
			ctr, err := testcontainers.Run(ctx, tag,
				testcontainers.WithImagePlatform("linux/"+arch),
				testcontainers.WithConfigModifier(func(cfg *container.Config) { cfg.Hostname = host }),
				testcontainers.WithExposedPorts("80/tcp"),
				testcontainers.WithWaitStrategyAndDeadline(time.Minute, wait.ForHTTP("/healthz").WithPort("80/tcp")),
				testcontainers.WithLogger(tclog.TestLogger(t)),
			)
			testcontainers.CleanupContainer(t, ctr, testcontainers.StopTimeout(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			addr, err := ctr.PortEndpoint(ctx, "80/tcp", "http")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := workloadGet(t, addr+"/")
			t.Logf("%s: GET / -> %q, %s after the container was asked for", arch, body, time.Since(t0).Truncate(time.Millisecond))
			if body != host+"\n" {
				t.Errorf("body %q, want the hostname %q", body, host)
			}
			if hz, _ := workloadGet(t, addr+"/healthz"); hz != "ok\n" {
				t.Errorf("/healthz: %q", hz)
			}
			// The image has a shell but no coreutils.
			if m := containerExec(t, ctr, "sh", "-c", "read -r m </proc/sys/kernel/osrelease && echo $m"); m == "" {
				t.Error("exec into nginx failed")
			}
		})
		t.Run("probe-"+arch, func(t *testing.T) {
			ctx := context.Background()
			tag := "docker.io/cnimatrix/probe:test-" + arch
			workloadLoad(t, c, imgs[ProbeImage], arch, tag)
			ctr, err := testcontainers.Run(ctx, tag, testcontainers.WithImagePlatform("linux/"+arch), testcontainers.WithLogger(tclog.TestLogger(t)))
			// sleep, as PID 1, ignores SIGTERM: do not wait for it.
			testcontainers.CleanupContainer(t, ctr, testcontainers.StopTimeout(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			info, err := ctr.Inspect(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st := fmt.Sprint(info.State.Running, " ", info.Config.Cmd); st != "true [/usr/bin/sleep infinity]" {
				t.Errorf("probe state %q", st)
			}
			if out := workloadDockerRun(t, "run", "--rm", "--platform", "linux/"+arch, tag, "sh", "-c", "echo args replace the sleep"); out != "args replace the sleep" {
				t.Errorf("docker run with a command: %q", out)
			}
			for _, cmd := range [][]string{
				{"curl", "--version"},
				{"dig", "-v"},
				{"dig", "+short", "localhost"},
				{"getent", "hosts", "localhost"},
				{"nc", "-h"},
				{"ip", "-V"},
				{"uname", "-m"},
			} {
				out := containerExec(t, ctr, cmd...)
				first, _, _ := strings.Cut(out, "\n")
				t.Logf("%s: %s -> %s", arch, strings.Join(cmd, " "), first)
				if cmd[0] == "uname" && out != map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[arch] {
					t.Errorf("uname -m in the %s image: %s", arch, out)
				}
			}
		})
	}
}

// containerExec runs cmd in ctr and returns its output, trimmed; a command
// that fails fails the test.
func containerExec(t *testing.T, ctr testcontainers.Container, cmd ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	code, r, err := ctr.Exec(ctx, cmd, tcexec.Multiplexed())
	var out []byte
	if r != nil {
		out, _ = io.ReadAll(r)
	}
	if err != nil || code != 0 {
		t.Fatalf("exec %s: exit %d, %v\n%s", strings.Join(cmd, " "), code, err, out)
	}
	return strings.TrimSpace(string(out))
}

// workloadGet polls url until it answers 200 (the arm64 container starts
// slowly under emulation) and returns the body and how long it took.
func workloadGet(t *testing.T, url string) (string, time.Duration) {
	t.Helper()
	t0 := time.Now()
	deadline := t0.Add(60 * time.Second)
	var last error
	for delay := 50 * time.Millisecond; time.Now().Before(deadline); delay = min(delay*2, time.Second) {
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return string(b), time.Since(t0)
			}
			err = fmt.Errorf("status %d: %s", resp.StatusCode, b)
		}
		last = err
		time.Sleep(delay)
	}
	t.Fatalf("GET %s: %v", url, last)
	return "", 0
}

// TestIptablesBaseInDocker checks the mode wrapper's choices in fresh
// network namespaces, each prepared with rules in one backend.
func TestIptablesBaseInDocker(t *testing.T) {
	c := workloadTestCache(t)
	workloadNeedDocker(t)
	ctx := context.Background()
	images := map[string]string{}
	for _, arch := range []string{"amd64", "arm64"} {
		t0 := time.Now()
		l, err := c.IptablesBaseLayer(ctx, arch)
		if err != nil {
			t.Fatal(err)
		}
		size, _ := l.Size()
		t.Logf("IptablesBaseLayer %s: %s, %.1f MB compressed", arch, time.Since(t0).Truncate(time.Millisecond), float64(size)/1e6)
		img, err := NewImage(arch, []v1.Layer{l}, v1.Config{Env: []string{workloadPath}, Entrypoint: []string{"/bin/sh", "-c"}})
		if err != nil {
			t.Fatal(err)
		}
		tag := "docker.io/cnimatrix/iptables-base:test-" + arch
		if err := DockerLoad(ctx, tag, img, c.Log); err != nil {
			t.Fatal(err)
		}
		images[arch] = tag
	}
	for _, tc := range []struct{ name, setup, mode string }{
		{"empty", "true", "nft"},
		{"legacy-rules", "xtables-legacy-multi iptables -A INPUT -j ACCEPT", "legacy"},
		{"nft-rules", "xtables-nft-multi iptables -A INPUT -j ACCEPT", "nft"},
		{"legacy-hint", "xtables-legacy-multi iptables -t mangle -N KUBE-IPTABLES-HINT && xtables-nft-multi iptables -A INPUT -j ACCEPT && xtables-nft-multi iptables -A INPUT -j DROP", "legacy"},
		{"forced", "xtables-legacy-multi iptables -A INPUT -j ACCEPT; export IPTABLES_MODE=nft", "nft"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			script := tc.setup + " && iptables -A FORWARD -j ACCEPT && iptables -S FORWARD && ip6tables -S >/dev/null && readlink /usr/sbin/iptables /usr/sbin/ip6tables-restore"
			out := workloadDockerRun(t, "run", "--rm", "--cap-add", "NET_ADMIN", images["amd64"], script)
			t.Logf("%s", out)
			if !strings.Contains(out, "using iptables-"+tc.mode) && tc.name != "forced" {
				t.Errorf("wrapper did not pick %s", tc.mode)
			}
			if !strings.Contains(out, "-A FORWARD -j ACCEPT") || strings.Count(out, "xtables-"+tc.mode+"-multi") != 2 {
				t.Errorf("rule not added through the %s backend, or links not set", tc.mode)
			}
		})
	}
	// Under qemu-user the netfilter netlink interfaces are not emulated
	// (nft and conntrack fail even for --version), so the arm64 base runs
	// what does not need them and is checked for aarch64 binaries.
	out := workloadDockerRun(t, "run", "--rm", "--platform", "linux/arm64", images["arm64"],
		"uname -m; ip -V; IPTABLES_MODE=legacy iptables --version; readlink /usr/sbin/iptables")
	t.Logf("arm64: %s", strings.ReplaceAll(out, "\n", " | "))
	if !strings.HasPrefix(out, "aarch64") || !strings.Contains(out, "iptables v1.8.9 (legacy)") || !strings.HasSuffix(out, "xtables-legacy-multi") {
		t.Errorf("arm64 base: %s", out)
	}
	l, _ := c.IptablesBaseLayer(ctx, "arm64")
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	found := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch ociCleanPath(h.Name) {
		case "usr/sbin/nft", "usr/sbin/conntrack", "usr/sbin/xtables-nft-multi", "usr/sbin/xtables-legacy-multi":
			b, _ := io.ReadAll(tr)
			if m := rootfsELFMachine(t, b); m != elf.EM_AARCH64 {
				t.Errorf("%s: %s", h.Name, m)
			}
			found++
		}
	}
	if found != 4 {
		t.Errorf("found %d of nft, conntrack, xtables-{nft,legacy}-multi", found)
	}
}
