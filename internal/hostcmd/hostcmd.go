// Package hostcmd runs commands on the host (tar, mkfs, qemu-img, ...) for
// the builders and providers, with errors that name the command and end with
// the tail of what it printed.
package hostcmd

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// RunOutput runs a command and returns its stdout; the error names the
// command and carries the end of its stderr.
func RunOutput(ctx context.Context, name string, args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, LastLines(stderr.String(), 10))
	}
	return stdout.Bytes(), nil
}

// Run is RunOutput for commands whose output is not needed.
func Run(ctx context.Context, name string, args ...string) error {
	_, err := RunOutput(ctx, name, args...)
	return err
}

// LastLines returns the last n lines of s (for error messages), saying how many came before.
func LastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d lines before)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
