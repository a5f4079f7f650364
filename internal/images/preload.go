package images

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/hostcmd"
)

// RootfsImport says which images to put into a root filesystem's containerd store.
type RootfsImport struct {
	HostContainerd string   // directory with host-arch containerd and ctr
	Root           string   // the root filesystem; its store is Root/var/lib/containerd
	Archive        string   // docker-archive tarball of the images
	Arch           string   // platform of the images to import
	Images         []string // references that must be in the store afterwards
	// Snapshotter, when set, unpacks the images into it at import (the
	// target's containerd must use the same one); empty leaves them packed.
	Snapshotter string
}

// ImportIntoRootfs imports images into a root filesystem's containerd store
// without running the target: a host containerd runs with its root at the
// rootfs's /var/lib/containerd, a private state directory and socket, and no
// CRI, imports the images pinned (the kubelet's image GC never removes them)
// and is stopped. Then its instance UUID, which every node built from the
// rootfs would otherwise share, is removed.
func ImportIntoRootfs(ctx context.Context, in RootfsImport) (err error) {
	tmp, err := os.MkdirTemp("", "cnimatrix-ctrd-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	sock := filepath.Join(tmp, "containerd.sock")
	cfg := fmt.Sprintf(`version = 3
root = %q
state = %q
# Only the content and metadata stores are needed; nothing here may touch
# the host's /opt, NRI socket or CRI state.
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
`, filepath.Join(in.Root, "var/lib/containerd"), filepath.Join(tmp, "state"), sock, sock+".ttrpc")
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
	// Its own process group, so a signal to ours does not reach it before
	// it is stopped cleanly below.
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
			err = fmt.Errorf("%w\ncontainerd log:\n%s", err, hostcmd.LastLines(string(b), 15))
		}
	}()
	ctr := filepath.Join(in.HostContainerd, "ctr")
	// Wait for the socket to answer, with backoff.
	delay := 50 * time.Millisecond
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, verr := hostcmd.RunOutput(ctx, ctr, "--address", sock, "version"); verr == nil {
			break
		} else if time.Now().After(deadline) {
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
	args := []string{"--address", sock, "--namespace", "k8s.io", "images", "import", "--label", "io.cri-containerd.pinned=pinned"}
	if in.Snapshotter != "" {
		args = append(args, "--snapshotter", in.Snapshotter)
	} else {
		args = append(args, "--no-unpack", "--digests")
	}
	args = append(args, "--platform", "linux/"+in.Arch, in.Archive)
	if _, err := hostcmd.RunOutput(ctx, ctr, args...); err != nil {
		return err
	}
	out, err := hostcmd.RunOutput(ctx, ctr, "--address", sock, "--namespace", "k8s.io", "images", "list", "-q")
	if err != nil {
		return err
	}
	have := strings.Fields(string(out))
	for _, want := range in.Images {
		if !slices.Contains(have, want) {
			return fmt.Errorf("image %s missing after import (have %s)", want, strings.Join(have, ", "))
		}
	}
	if err := os.Remove(filepath.Join(in.Root, "var/lib/containerd/io.containerd.grpc.v1.introspection/uuid")); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}
