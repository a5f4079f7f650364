package kind

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"

	kindexec "sigs.k8s.io/kind/pkg/exec"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
	"github.com/cnimatrix/cnimatrix/internal/hostcmd"
)

// CheckDocker fails with a message a user can act on when the docker CLI is
// missing or the engine does not answer.
func CheckDocker(ctx context.Context) error {
	const hint = "install docker.io and start dockerd (hack/setup-host.sh)"
	if _, err := exec.LookPath("docker"); err != nil {
		return fmt.Errorf("no Docker engine reachable: docker CLI not found in PATH; %s", hint)
	}
	// A daemon that is starting or wedged can hang the CLI; bound the wait.
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	out, err := docker(ctx, "version", "--format", "{{.Server.Version}}")
	if err != nil {
		why := err.Error()
		if ctx.Err() != nil {
			why = "no answer within 15s"
		}
		return fmt.Errorf("no Docker engine reachable: %s; %s", why, hint)
	}
	if strings.TrimSpace(string(out)) == "" {
		return fmt.Errorf("no Docker engine reachable: the daemon reported no server version; %s", hint)
	}
	return nil
}

// docker runs the docker CLI and returns its stdout. The error is kind's
// exec.RunError (the command and its combined output), with docker's
// stderr, where docker explains itself, in its message.
func docker(ctx context.Context, args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := kindexec.CommandContext(ctx, "docker", args...)
	cmd.SetStdout(&stdout)
	cmd.SetStderr(&stderr)
	if err := cmd.Run(); err != nil {
		if s := strings.TrimSpace(stderr.String()); s != "" {
			return stdout.Bytes(), fmt.Errorf("%w: %s", err, s)
		}
		return stdout.Bytes(), err
	}
	return stdout.Bytes(), nil
}

// isNoSuchObject reports whether err is docker saying that the network,
// container or image asked for does not exist.
func isNoSuchObject(err error) bool {
	re, ok := errors.AsType[*kindexec.RunError](err)
	if !ok {
		return false
	}
	s := strings.ToLower(string(re.Output))
	return strings.Contains(s, "no such") || strings.Contains(s, "not found")
}

// dockerExec runs commands in a node container with `docker exec`.
type dockerExec struct {
	container string
}

var _ cluster.Execer = dockerExec{}

// Run implements cluster.Execer. When stderr is nil, its text is kept for the
// error so that a failing command explains itself.
func (d dockerExec) Run(ctx context.Context, stdout, stderr io.Writer, argv ...string) error {
	if len(argv) == 0 {
		return fmt.Errorf("exec on %s: empty command", d.container)
	}
	var errBuf bytes.Buffer
	if stderr == nil {
		stderr = &errBuf
	}
	if stdout == nil {
		stdout = io.Discard
	}
	cmd := exec.CommandContext(ctx, "docker", append([]string{"exec", d.container}, argv...)...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Run(); err != nil {
		msg := fmt.Sprintf("exec %q on %s: %v", strings.Join(argv, " "), d.container, err)
		if s := strings.TrimSpace(errBuf.String()); s != "" {
			msg += ": " + hostcmd.LastLines(s, 10)
		}
		return fmt.Errorf("%s: %w", msg, err)
	}
	return nil
}
