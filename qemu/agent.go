package qemu

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/hostcmd"
	"github.com/cnimatrix/cnimatrix/internal/images"
)

// AgentPort is where cnimatrix-agent listens inside a node VM.
const AgentPort = 10299

//go:embed agent/main.go
var agentSource string

// buildAgent compiles qemu/agent for arch (the VM's, or the host's for
// calibration) and returns the binary's path.
func buildAgent(ctx context.Context, c *images.Cache, arch string) (string, error) {
	dir, err := c.GoBuild(ctx, images.GoBuild{
		Name:     "qemu-agent",
		Packages: []string{images.BuildModule + "/cnimatrix-agent"},
		Files:    map[string]string{"cnimatrix-agent/main.go": agentSource},
		Arch:     arch,
	})
	if err != nil {
		return "", fmt.Errorf("build cnimatrix-agent for %s: %w", arch, err)
	}
	return filepath.Join(dir, "cnimatrix-agent"), nil
}

// Agent talks to cnimatrix-agent in a VM. It is the VM node's
// cluster.Execer.
type Agent struct {
	// Addr is host:port of the agent.
	Addr  string
	Token string
	hc    *http.Client
}

// NewAgent returns a client of the agent at ip.
func NewAgent(ip, token string) *Agent {
	return &Agent{
		Addr: net.JoinHostPort(ip, strconv.Itoa(AgentPort)), Token: token,
		hc: &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext, DisableKeepAlives: true}},
	}
}

type execRequest struct {
	Argv    []string `json:"argv"`
	Stdin   string   `json:"stdin,omitempty"`
	Timeout float64  `json:"timeoutSeconds,omitempty"`
}

type execResponse struct {
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	ExitCode int    `json:"exitCode"`
	Error    string `json:"error,omitempty"`
}

// ExitError is a command that ran in the VM and exited non-zero.
type ExitError struct {
	Argv   []string
	Code   int
	Stderr string
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("%s: exit status %d", strings.Join(e.Argv, " "), e.Code)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + hostcmd.LastLines(s, 5)
	}
	return msg
}

// Healthy reports whether the agent answers.
func (a *Agent) Healthy(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.Addr+"/healthz", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.Token)
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("agent %s: %s", a.Addr, resp.Status)
	}
	return nil
}

// WaitHealthy polls the agent with backoff until it answers or ctx ends.
func (a *Agent) WaitHealthy(ctx context.Context) error {
	delay := 200 * time.Millisecond
	for {
		err := a.Healthy(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("agent %s not answering: %w (last: %v)", a.Addr, ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(delay*3/2, 2*time.Second)
	}
}

// Exec runs argv in the VM with stdin and returns its output. A non-zero
// exit is an *ExitError; the output is returned with it.
func (a *Agent) Exec(ctx context.Context, stdin string, argv ...string) (stdout, stderr string, err error) {
	r := execRequest{Argv: argv, Stdin: stdin}
	if dl, ok := ctx.Deadline(); ok {
		r.Timeout = time.Until(dl).Seconds()
	}
	body, err := json.Marshal(r)
	if err != nil {
		return "", "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+a.Addr+"/exec", bytes.NewReader(body))
	if err != nil {
		return "", "", err
	}
	req.Header.Set("Authorization", "Bearer "+a.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.hc.Do(req)
	if err != nil {
		return "", "", fmt.Errorf("agent %s: %w", a.Addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return "", "", fmt.Errorf("agent %s: %s: %s", a.Addr, resp.Status, strings.TrimSpace(string(b)))
	}
	var out execResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", "", fmt.Errorf("agent %s: decode reply: %w", a.Addr, err)
	}
	switch {
	case out.Error != "" && out.ExitCode < 0:
		return out.Stdout, out.Stderr, fmt.Errorf("%s: %s", strings.Join(argv, " "), out.Error)
	case out.ExitCode != 0:
		return out.Stdout, out.Stderr, &ExitError{Argv: argv, Code: out.ExitCode, Stderr: out.Stderr}
	}
	return out.Stdout, out.Stderr, nil
}

// Run implements cluster.Execer.
func (a *Agent) Run(ctx context.Context, stdout, stderr io.Writer, argv ...string) error {
	o, e, err := a.Exec(ctx, "", argv...)
	if stdout != nil {
		_, _ = io.WriteString(stdout, o)
	}
	if stderr != nil {
		_, _ = io.WriteString(stderr, e)
	}
	return err
}

// Calibration is the emulation factor of a VM: the same CPU workload run
// in the VM and natively on the host.
type Calibration struct {
	Host, VM time.Duration
}

// Factor is how many times slower the VM ran the workload (>= 1 means slower).
func (c Calibration) Factor() float64 {
	if c.Host <= 0 {
		return 1
	}
	return float64(c.VM) / float64(c.Host)
}

func (c Calibration) String() string {
	return fmt.Sprintf("emulation factor %.1fx (calibration workload: VM %s, host %s)", c.Factor(), c.VM.Round(time.Millisecond), c.Host.Round(time.Millisecond))
}

// Calibrate runs the agent's calibration workload in the VM and on the
// host (best of three each, to keep scheduler noise out).
func Calibrate(ctx context.Context, c *images.Cache, a *Agent) (Calibration, error) {
	hostBin, err := buildAgent(ctx, c, runtime.GOARCH)
	if err != nil {
		return Calibration{}, err
	}
	best := func(run func() (string, error)) (time.Duration, error) {
		var b time.Duration
		for range 3 {
			out, err := run()
			if err != nil {
				return 0, err
			}
			us, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("calibration output %q: %w", out, err)
			}
			if d := time.Duration(us) * time.Microsecond; b == 0 || d < b {
				b = d
			}
		}
		return b, nil
	}
	var cal Calibration
	if cal.Host, err = best(func() (string, error) {
		out, err := exec.CommandContext(ctx, hostBin, "calibrate").Output()
		return string(out), err
	}); err != nil {
		return cal, fmt.Errorf("calibrate on the host: %w", err)
	}
	if cal.VM, err = best(func() (string, error) {
		out, _, err := a.Exec(ctx, "", "/usr/local/bin/cnimatrix-agent", "calibrate")
		return out, err
	}); err != nil {
		return cal, fmt.Errorf("calibrate in the VM: %w", err)
	}
	if cal.Host <= 0 || cal.VM <= 0 {
		return cal, errors.New("calibration measured no time")
	}
	return cal, nil
}
