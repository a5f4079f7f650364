package images

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/repo"
	"golang.org/x/mod/modfile"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

func flannelRepoFile(t *testing.T, rel string) string {
	t.Helper()
	root, err := repo.Root()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, rel)
}

// manifestObjects splits a multi-document YAML file and decodes each
// non-empty document.
func manifestObjects(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var objs []*unstructured.Unstructured
	for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("%s document %d: %v", path, i, err)
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
	return objs
}

func TestFlannelManifest(t *testing.T) {
	path, err := FlannelManifestPath()
	if err != nil {
		t.Fatal(err)
	}
	byKind := map[string]*unstructured.Unstructured{}
	for _, o := range manifestObjects(t, path) {
		if o.GetAPIVersion() == "" || o.GetName() == "" {
			t.Errorf("object without apiVersion or name: %v", o.Object)
		}
		byKind[o.GetKind()] = o
	}
	for _, k := range []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet"} {
		if byKind[k] == nil {
			t.Errorf("manifest has no %s", k)
		}
	}
	ds := byKind["DaemonSet"]
	if ds == nil {
		t.FailNow()
	}
	if ds.GetNamespace() != "kube-flannel" {
		t.Errorf("DaemonSet namespace %q, want kube-flannel", ds.GetNamespace())
	}
	if hn, _, _ := unstructured.NestedBool(ds.Object, "spec", "template", "spec", "hostNetwork"); !hn {
		t.Errorf("DaemonSet is not hostNetwork")
	}
	if app, _, _ := unstructured.NestedString(ds.Object, "spec", "template", "metadata", "labels", "app"); app != "flannel" {
		t.Errorf("pod label app=%q, want flannel", app)
	}
	containers, _, _ := unstructured.NestedSlice(ds.Object, "spec", "template", "spec", "containers")
	if len(containers) != 1 {
		t.Fatalf("DaemonSet has %d containers, want 1", len(containers))
	}
	c := containers[0].(map[string]any)
	if c["image"] != FlannelImageRef || FlannelImageRef != "docker.io/cnimatrix/flannel:v0.28.10" {
		t.Errorf("image %v, want %s", c["image"], FlannelImageRef)
	}
	if c["imagePullPolicy"] != "IfNotPresent" {
		t.Errorf("imagePullPolicy %v, want IfNotPresent", c["imagePullPolicy"])
	}
	probe, ok := c["readinessProbe"].(map[string]any)
	if !ok {
		t.Fatalf("no readinessProbe")
	}
	probeCmd, _, _ := unstructured.NestedStringSlice(probe, "exec", "command")
	if !strings.Contains(strings.Join(probeCmd, " "), "/etc/cni/net.d/10-flannel.conflist") {
		t.Errorf("readiness probe %q does not check the conflist", probeCmd)
	}
	env, _, _ := unstructured.NestedSlice(c, "env")
	names := map[string]bool{}
	for _, e := range env {
		names[e.(map[string]any)["name"].(string)] = true
	}
	for _, n := range []string{"NODE_NAME", "POD_NAME", "POD_NAMESPACE"} {
		if !names[n] {
			t.Errorf("container env lacks %s", n)
		}
	}

	netConf, _, _ := unstructured.NestedString(byKind["ConfigMap"].Object, "data", "net-conf.json")
	var nc struct {
		Network        string
		EnableNFTables bool
		Backend        struct{ Type string }
	}
	if err := json.Unmarshal([]byte(netConf), &nc); err != nil {
		t.Fatalf("net-conf.json: %v\n%s", err, netConf)
	}
	if nc.Network != "10.244.0.0/16" || nc.Backend.Type != "vxlan" || nc.EnableNFTables {
		t.Errorf("net-conf.json = %+v", nc)
	}
}

func TestFlannelEntrypointSyntax(t *testing.T) {
	script := flannelRepoFile(t, flannelEntrypoint)
	if out, err := exec.Command("sh", "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("sh -n %s: %v\n%s", script, err, out)
	}
	fi, err := os.Stat(script)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		t.Errorf("%s is not executable (mode %s)", script, fi.Mode())
	}
}

// FlannelVersion must be what the flanneld module actually builds.
func TestFlanneldModuleRequiresFlannelVersion(t *testing.T) {
	path := flannelRepoFile(t, filepath.Join(flanneldModuleDir, "go.mod"))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	mf, err := modfile.Parse(path, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	if mf.Module.Mod.Path != repo.Module+"/fixtures/cni/flannel/flanneld" {
		t.Errorf("module path %s", mf.Module.Mod.Path)
	}
	for _, r := range mf.Require {
		if r.Mod.Path == "github.com/flannel-io/flannel" {
			if r.Mod.Version != FlannelVersion {
				t.Errorf("flanneld requires flannel %s, FlannelVersion is %s", r.Mod.Version, FlannelVersion)
			}
			return
		}
	}
	t.Errorf("flanneld go.mod does not require github.com/flannel-io/flannel")
}

func TestFlanneldArm64(t *testing.T) {
	if testing.Short() {
		t.Skip("builds flanneld (about 2 minutes cold)")
	}
	c := goBuildTestCache(t)
	var bin string
	buildTwice(t, "flanneld arm64", func() (string, error) {
		var err error
		bin, err = c.Flanneld(context.Background(), "arm64")
		return bin, err
	})
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != elf.EM_AARCH64 {
		t.Errorf("%s: ELF machine %s, want EM_AARCH64", bin, f.Machine)
	}
	// CGO_ENABLED=0: no interpreter, so it runs in any base image.
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s is dynamically linked", bin)
		}
	}
}

func TestFlanneldRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds flanneld for the host (about a minute cold)")
	}
	c := goBuildTestCache(t)
	bin, err := c.Flanneld(context.Background(), runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || strings.TrimSpace(string(out)) != FlannelVersion {
		t.Errorf("flanneld --version = %q, %v; want %s", out, err, FlannelVersion)
	}
	// Without --kube-subnet-mgr there is nothing it can do (no etcd in this build).
	out, err = exec.Command(bin).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "--kube-subnet-mgr") {
		t.Errorf("flanneld without flags: %v\n%s", err, out)
	}
	// Flags also come from FLANNELD_* as upstream; a bad value is a usage error.
	cmd := exec.Command(bin, "--kube-subnet-mgr")
	cmd.Env = append(os.Environ(), "FLANNELD_IPTABLES_RESYNC=0")
	out, err = cmd.CombinedOutput()
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "iptables-resync") {
		t.Errorf("flanneld with FLANNELD_IPTABLES_RESYNC=0: %v\n%s", err, out)
	}
}

// fakeFlanneld stands in for flanneld's file-level behaviour only (the
// entrypoint's contract): it records its arguments, writes the subnet file by
// rename as flanneld does, then runs until SIGTERM and exits with 7 so the
// test can see the status come through the entrypoint.
const fakeFlanneld = `#!/bin/sh
printf '%s\n' "$@" >"$FAKE_ARGS"
[ -n "${FAKE_EXIT_EARLY:-}" ] && exit "$FAKE_EXIT_EARLY"
mkdir -p "${FLANNELD_SUBNET_FILE%/*}"
printf 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.130.1/17\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n' >"$FLANNELD_SUBNET_FILE.tmp"
mv "$FLANNELD_SUBNET_FILE.tmp" "$FLANNELD_SUBNET_FILE"
trap 'exit 7' TERM
while :; do sleep 1 & wait $!; done
`

type entrypointRun struct {
	dir, conflist, ready, args string
	cmd                        *exec.Cmd
	out                        *bytes.Buffer
	done                       chan error
}

func startEntrypoint(t *testing.T, extraEnv ...string) *entrypointRun {
	t.Helper()
	dir := t.TempDir()
	fake := filepath.Join(dir, "flanneld")
	if err := os.WriteFile(fake, []byte(fakeFlanneld), 0o755); err != nil {
		t.Fatal(err)
	}
	r := &entrypointRun{
		dir:      dir,
		conflist: filepath.Join(dir, "net.d", "10-flannel.conflist"),
		ready:    filepath.Join(dir, "state", "ready"),
		args:     filepath.Join(dir, "args"),
		out:      &bytes.Buffer{},
		done:     make(chan error, 1),
	}
	// A subnet file left by an earlier pod on the host: it must not be used.
	if err := os.MkdirAll(filepath.Join(dir, "run"), 0o755); err != nil {
		t.Fatal(err)
	}
	stale := "FLANNEL_NETWORK=10.9.0.0/16\nFLANNEL_SUBNET=10.9.9.1/24\nFLANNEL_MTU=1400\nFLANNEL_IPMASQ=false\n"
	if err := os.WriteFile(filepath.Join(dir, "run", "subnet.env"), []byte(stale), 0o644); err != nil {
		t.Fatal(err)
	}
	r.cmd = exec.Command("sh", flannelRepoFile(t, flannelEntrypoint), "--ip-masq", "--kube-subnet-mgr")
	r.cmd.Env = append(os.Environ(),
		"FLANNELD="+fake,
		"FLANNELD_SUBNET_FILE="+filepath.Join(dir, "run", "subnet.env"),
		"CNI_CONF_DIR="+filepath.Join(dir, "net.d"),
		"FLANNEL_READY_FILE="+r.ready,
		"FAKE_ARGS="+r.args,
	)
	r.cmd.Env = append(r.cmd.Env, extraEnv...)
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	// Its own process group, so cleanup also reaches the fake flanneld.
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		<-r.done
	})
	return r
}

// waitFile polls for path with a growing delay until it exists, the
// entrypoint exits, or the deadline passes.
func (r *entrypointRun) waitFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for delay := 20 * time.Millisecond; ; delay = min(2*delay, 500*time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		select {
		case err := <-r.done:
			r.done <- err
			t.Fatalf("entrypoint exited (%v) before %s appeared:\n%s", err, path, r.out)
		case <-time.After(delay):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear in 20s:\n%s", path, r.out)
		}
	}
}

func TestFlannelEntrypointWritesConflist(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the entrypoint with a fake flanneld")
	}
	r := startEntrypoint(t)
	r.waitFile(t, r.ready)

	data, err := os.ReadFile(r.conflist)
	if err != nil {
		t.Fatalf("ready marker without conflist: %v\n%s", err, r.out)
	}
	var conf struct {
		CNIVersion string `json:"cniVersion"`
		Name       string
		Plugins    []map[string]any
	}
	if err := json.Unmarshal(data, &conf); err != nil {
		t.Fatalf("conflist is not JSON: %v\n%s", err, data)
	}
	if conf.Name == "" || conf.CNIVersion == "" || len(conf.Plugins) != 2 {
		t.Fatalf("conflist shape: %s", data)
	}
	br, pm := conf.Plugins[0], conf.Plugins[1]
	if br["type"] != "bridge" || pm["type"] != "portmap" {
		t.Errorf("plugins %v, %v; want bridge then portmap", br["type"], pm["type"])
	}
	for k, want := range map[string]any{
		"isDefaultGateway": true, "isGateway": true, "hairpinMode": true,
		// flanneld masquerades (FLANNEL_IPMASQ=true), so the bridge must not.
		"ipMasq": false,
		"mtu":    float64(1450),
	} {
		if br[k] != want {
			t.Errorf("bridge %s = %v, want %v", k, br[k], want)
		}
	}
	ipam, _ := br["ipam"].(map[string]any)
	ranges, _ := json.Marshal(ipam["ranges"])
	// FLANNEL_SUBNET=10.244.130.1/17: host-local wants the network address.
	if ipam["type"] != "host-local" || string(ranges) != `[[{"subnet":"10.244.128.0/17"}]]` {
		t.Errorf("ipam = %v (ranges %s)", ipam, ranges)
	}
	if caps, _ := pm["capabilities"].(map[string]any); caps["portMappings"] != true {
		t.Errorf("portmap capabilities = %v", pm["capabilities"])
	}
	if leftovers, _ := filepath.Glob(filepath.Join(r.dir, "net.d", ".*")); len(leftovers) != 0 {
		t.Errorf("temporary files left in net.d: %v", leftovers)
	}
	args, err := os.ReadFile(r.args)
	if err != nil || string(args) != "--ip-masq\n--kube-subnet-mgr\n" {
		t.Errorf("flanneld got args %q (%v)", args, err)
	}

	// SIGTERM goes to flanneld and its exit status comes back out.
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-r.done:
		r.done <- err
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 7 {
			t.Errorf("entrypoint after SIGTERM: %v, want exit 7 (the fake flanneld's)\n%s", err, r.out)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("entrypoint did not exit after SIGTERM:\n%s", r.out)
	}
}

func TestFlannelEntrypointFlanneldFailsEarly(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the entrypoint with a fake flanneld")
	}
	r := startEntrypoint(t, "FAKE_EXIT_EARLY=3")
	select {
	case err := <-r.done:
		r.done <- err
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 {
			t.Errorf("entrypoint: %v, want exit 3 (flanneld's)\n%s", err, r.out)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("entrypoint kept running after flanneld exited:\n%s", r.out)
	}
	for _, p := range []string{r.conflist, r.ready} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s written although flanneld never wrote a subnet file", p)
		}
	}
}

func TestFlannelImageArm64(t *testing.T) {
	if testing.Short() {
		t.Skip("builds flanneld (about 2 minutes cold)")
	}
	c := goBuildTestCache(t)
	// The real base (iptables, a shell) comes from elsewhere; this checks our
	// part of the assembly on top of any base.
	base, err := LayerFromFiles(LayerFiles{"etc/base-marker": {Content: []byte("base\n")}})
	if err != nil {
		t.Fatal(err)
	}
	img, err := c.FlannelImage(context.Background(), "arm64", base)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "arm64" {
		t.Errorf("platform %s/%s, want linux/arm64", cf.OS, cf.Architecture)
	}
	if strings.Join(cf.Config.Entrypoint, " ") != "/opt/bin/entrypoint.sh" || len(cf.Config.Cmd) != 0 {
		t.Errorf("entrypoint %q cmd %q", cf.Config.Entrypoint, cf.Config.Cmd)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 2 {
		t.Fatalf("layers: %d, %v", len(layers), err)
	}
	rc, err := layers[1].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	script, err := os.ReadFile(flannelRepoFile(t, flannelEntrypoint))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seen[hdr.Name] = true
		switch hdr.Name {
		case "opt/bin/entrypoint.sh":
			got, _ := io.ReadAll(tr)
			if !bytes.Equal(got, script) || hdr.Mode&0o111 == 0 {
				t.Errorf("entrypoint.sh in the image differs from the source or is not executable (mode %o)", hdr.Mode)
			}
		case "opt/bin/flanneld":
			if hdr.Mode&0o111 == 0 {
				t.Errorf("flanneld mode %o", hdr.Mode)
			}
			f, err := elf.NewFile(bytesReaderAt(t, tr))
			if err != nil {
				t.Fatalf("flanneld in the image: %v", err)
			}
			if f.Machine != elf.EM_AARCH64 {
				t.Errorf("flanneld in the image is %s, want EM_AARCH64", f.Machine)
			}
		}
	}
	for _, p := range []string{"opt/bin/entrypoint.sh", "opt/bin/flanneld"} {
		if !seen[p] {
			t.Errorf("layer lacks %s (has %v)", p, seen)
		}
	}
}

func bytesReaderAt(t *testing.T, r io.Reader) io.ReaderAt {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(b)
}
