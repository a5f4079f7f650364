package qemu

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/cnimatrix/cnimatrix/internal/images"
)

// preloadSnapshotter is the snapshotter of the VM's containerd config.
const preloadSnapshotter = "overlayfs"

// preloadImages puts the pause and kube-proxy images into the disk's
// containerd store. Importing them inside the VM takes minutes under TCG,
// so the host runs a containerd whose root is the disk's /var/lib/
// containerd (own state dir and socket, no CRI) and imports there.
//
// They are unpacked here too, into the overlayfs snapshotter the VM's
// containerd uses (its snapshots are plain directories plus a metadata
// database of relative IDs, so they move with the root): unpacking
// kube-proxy under TCG took ~20 s of each VM's first container start.
func preloadImages(ctx context.Context, c *images.Cache, in *diskInputs, root, dir string) (err error) {
	archive, err := writeNodeImages(ctx, c, in, dir)
	if err != nil {
		return err
	}
	defer os.Remove(archive)

	tmp, err := os.MkdirTemp("", "cnimatrix-qemu-ctrd-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	sock := filepath.Join(tmp, "containerd.sock")
	cfg := fmt.Sprintf(`version = 3
root = %q
state = %q
# Only the content and metadata stores are needed.
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.cri.v1.images",
  "io.containerd.cri.v1.runtime",
  "io.containerd.podsandbox.controller.v1.podsandbox",
  "io.containerd.internal.v1.opt",
  "io.containerd.nri.v1.nri",
  "io.containerd.internal.v1.tracing",
  "io.containerd.tracing.processor.v1.otlp",
]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = ""
[metrics]
  address = ""
`, filepath.Join(root, "var/lib/containerd"), filepath.Join(tmp, "state"), sock, sock+".ttrpc")
	if err := os.WriteFile(filepath.Join(tmp, "config.toml"), []byte(cfg), 0o644); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(tmp, "containerd.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	daemon := exec.Command(filepath.Join(in.HostContainerd, "containerd"), "--config", filepath.Join(tmp, "config.toml"))
	daemon.Stdout, daemon.Stderr = logf, logf
	// Own process group: a Ctrl-C reaches it only through the stop below.
	daemon.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := daemon.Start(); err != nil {
		return fmt.Errorf("start containerd: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- daemon.Wait() }()
	defer func() {
		_ = daemon.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = daemon.Process.Kill()
			<-exited
		}
		if err != nil {
			_, _ = logf.Seek(0, io.SeekStart)
			b, _ := io.ReadAll(logf)
			err = fmt.Errorf("%w\ncontainerd log:\n%s", err, lastLines(string(b), 15))
		}
	}()
	ctr := filepath.Join(in.HostContainerd, "ctr")
	delay := 50 * time.Millisecond
	for deadline := time.Now().Add(30 * time.Second); ; {
		_, verr := output(ctx, ctr, "--address", sock, "version")
		if verr == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd did not answer: %w", verr)
		}
		select {
		case e := <-exited:
			exited <- e
			return fmt.Errorf("containerd exited: %v", e)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, time.Second)
	}
	if _, err := output(ctx, ctr, "--address", sock, "--namespace", "k8s.io", "images", "import",
		"--label", "io.cri-containerd.pinned=pinned", "--snapshotter", in.Snapshotter,
		"--platform", "linux/"+Arch, archive); err != nil {
		return err
	}
	out, err := output(ctx, ctr, "--address", sock, "--namespace", "k8s.io", "images", "list", "-q")
	if err != nil {
		return err
	}
	have := strings.Fields(string(out))
	for _, want := range in.Images {
		if !slices.Contains(have, want) {
			return fmt.Errorf("image %s missing after import (have %s)", want, strings.Join(have, ", "))
		}
	}
	// The preloading containerd's instance UUID would be shared by every VM.
	if err := os.Remove(filepath.Join(root, "var/lib/containerd/io.containerd.grpc.v1.introspection/uuid")); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// writeNodeImages writes pause and kube-proxy (arm64, under kubeadm's tags)
// into a docker-archive tarball. They are made as the kind node images make
// theirs: pause alone, kube-proxy on the Debian iptables base layer so it
// runs the iptables of its image.
func writeNodeImages(ctx context.Context, c *images.Cache, in *diskInputs, dir string) (string, error) {
	iptables, err := c.IptablesBaseLayer(ctx, Arch)
	if err != nil {
		return "", err
	}
	refs := map[name.Reference]v1.Image{}
	for _, ref := range in.Images {
		tag, err := name.NewTag(ref, name.StrictValidation)
		if err != nil {
			return "", fmt.Errorf("image %q: %w", ref, err)
		}
		var (
			layers []v1.Layer
			cfg    v1.Config
			stage  = filepath.Join(dir, "stage-"+path.Base(tag.RepositoryStr()))
		)
		switch path.Base(tag.RepositoryStr()) {
		case "pause":
			if err := stageFile(filepath.Join(in.Pause, "pause"), filepath.Join(stage, "pause")); err != nil {
				return "", err
			}
			l, err := c.LayerFromDir(ctx, stage, "")
			if err != nil {
				return "", err
			}
			layers, cfg = []v1.Layer{l}, v1.Config{Entrypoint: []string{"/pause"}}
		case "kube-proxy":
			if err := stageFile(filepath.Join(in.Kube, "kube-proxy"), filepath.Join(stage, "kube-proxy")); err != nil {
				return "", err
			}
			l, err := c.LayerFromDir(ctx, stage, "usr/local/bin")
			if err != nil {
				return "", err
			}
			layers = []v1.Layer{iptables, l}
			cfg = v1.Config{
				Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
				Entrypoint: []string{"/usr/local/bin/kube-proxy"},
			}
		default:
			return "", fmt.Errorf("no recipe for image %s", ref)
		}
		img, err := images.NewImage(Arch, layers, cfg)
		if err != nil {
			return "", err
		}
		refs[tag] = img
		defer os.RemoveAll(stage)
	}
	out := filepath.Join(dir, "preload.tar")
	if err := tarball.MultiRefWriteToFile(out, refs); err != nil {
		return "", fmt.Errorf("write preload images: %w", err)
	}
	return out, nil
}

// stageFile hard-links src (keeping its time, so cached layers keyed by the
// listing are reused) or copies it.
func stageFile(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		return err
	}
	return os.Chtimes(dst, fi.ModTime(), fi.ModTime())
}
