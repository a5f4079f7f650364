// Command cnimatrix-agent runs inside a cnimatrix QEMU node and lets the host
// run commands there: the node has no sshd, and the harness needs commands on
// its nodes (kubeadm join, journals for artifacts, calibration) before and
// whether or not Kubernetes works on it.
//
//	cnimatrix-agent serve      listen on :10299; requests carry the token of the fw_cfg file opt/cnimatrix/agent-token
//	cnimatrix-agent calibrate  run a fixed CPU workload and print its duration in microseconds
//
// The host builds this file for both arches: `calibrate` run natively on the
// host and inside the VM gives the emulation factor from identical code.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"
)

const (
	port      = ":10299"
	maxOutput = 16 << 20
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: cnimatrix-agent serve|calibrate")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		if err := serve(); err != nil {
			fmt.Fprintln(os.Stderr, "cnimatrix-agent:", err)
			os.Exit(1)
		}
	case "calibrate":
		fmt.Println(calibrate().Microseconds())
	default:
		fmt.Fprintf(os.Stderr, "cnimatrix-agent: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

// calibrate is a mix of hashing, allocation, maps and sorting: the kind of
// work a kubelet and a CNI agent do, and a single thread so that the number
// does not depend on the count of CPUs.
func calibrate() time.Duration {
	t0 := time.Now()
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	sum := sha256.Sum256(buf)
	for range 16 {
		sum = sha256.Sum256(append(buf[:len(buf)-32], sum[:]...))
	}
	m := map[string]int{}
	keys := make([]string, 0, 50000)
	for i := range 50000 {
		k := fmt.Sprintf("k%08d-%x", (i*7919)%50000, sum[i%32])
		m[k] += i
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(m) == 0 || len(keys) == 0 {
		panic("unreachable")
	}
	return time.Since(t0)
}

// tokenFile is where the kernel's qemu_fw_cfg driver shows the token the
// host gave QEMU (-fw_cfg name=opt/cnimatrix/agent-token). It is mode 0400
// and /sys/firmware is masked in unprivileged containers, so pods on the
// node cannot read it; the kernel command line (/proc/cmdline) any pod can,
// which is why the token is not there.
const tokenFile = "/sys/firmware/qemu_fw_cfg/by_name/opt/cnimatrix/agent-token/raw"

func token() (string, error) {
	b, err := os.ReadFile(tokenFile)
	if errors.Is(err, os.ErrNotExist) {
		// The driver is a module; the agent may start before
		// systemd-modules-load.
		if out, merr := exec.Command("modprobe", "qemu_fw_cfg").CombinedOutput(); merr != nil {
			return "", fmt.Errorf("modprobe qemu_fw_cfg: %v: %s", merr, bytes.TrimSpace(out))
		}
		b, err = os.ReadFile(tokenFile)
	}
	if err != nil {
		return "", fmt.Errorf("agent token: %w", err)
	}
	if t := strings.TrimSpace(string(b)); len(t) >= 16 {
		return t, nil
	}
	return "", fmt.Errorf("agent token: %s holds no token", tokenFile)
}

// ExecRequest and ExecResponse are the /exec protocol (JSON).
type ExecRequest struct {
	Argv    []string `json:"argv"`
	Stdin   string   `json:"stdin,omitempty"`
	Timeout float64  `json:"timeoutSeconds,omitempty"`
}

type ExecResponse struct {
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	ExitCode int    `json:"exitCode"`
	Error    string `json:"error,omitempty"`
}

func serve() error {
	tok, err := token()
	if err != nil {
		return err
	}
	authed := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
			if subtle.ConstantTimeCompare([]byte(got), []byte(tok)) != 1 {
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			h(w, r)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", authed(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") }))
	mux.HandleFunc("POST /exec", authed(handleExec))
	srv := &http.Server{Addr: port, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	fmt.Println("cnimatrix-agent: listening on", port)
	return srv.ListenAndServe()
}

type capped struct {
	bytes.Buffer
	dropped bool
}

func (c *capped) Write(p []byte) (int, error) {
	if room := maxOutput - c.Len(); room < len(p) {
		c.dropped = true
		if room > 0 {
			c.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return c.Buffer.Write(p)
}

func handleExec(w http.ResponseWriter, r *http.Request) {
	var req ExecRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<20)).Decode(&req); err != nil || len(req.Argv) == 0 {
		http.Error(w, "bad request: want JSON {argv: [...]}", http.StatusBadRequest)
		return
	}
	ctx := r.Context()
	if req.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(req.Timeout*float64(time.Second)))
		defer cancel()
	}
	var stdout, stderr capped
	cmd := exec.CommandContext(ctx, req.Argv[0], req.Argv[1:]...)
	cmd.Stdin = strings.NewReader(req.Stdin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	resp := ExecResponse{ExitCode: -1}
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		resp.ExitCode = 0
	case errors.As(err, &ee) && ee.ExitCode() >= 0:
		resp.ExitCode = ee.ExitCode()
	default:
		resp.Error = err.Error()
	}
	if stdout.dropped || stderr.dropped {
		resp.Error = strings.TrimSpace(resp.Error + fmt.Sprintf(" (output cut at %d bytes)", maxOutput))
	}
	resp.Stdout, resp.Stderr = stdout.String(), stderr.String()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}
