package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
	kindprov "github.com/cnimatrix/cnimatrix/internal/cluster/kind"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

// What a person does to a long run: Ctrl-C (SIGINT) or a CI job's
// cancellation (SIGTERM) in the middle of one of its phases. The run must
// end on its own within minutes, leave none of what it made (containers,
// VM processes, taps, network, registry blobs, run lock, cluster work dirs)
// and write a valid matrix whose interrupted cell is unknown. After SIGKILL
// nothing can clean up in the process: `cnimatrix gc` must then remove what
// was left. CNIMATRIX_INTERRUPT_FULL=1 runs every phase with both signals;
// by default one signal per phase (alternating) keeps `make test` shorter.
func TestInterruptLeavesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("interrupts real cells")
	}
	ctx := context.Background()
	if err := kindprov.CheckDocker(ctx); err != nil {
		t.Skip(err)
	}
	kind := writeFile(t, "name: interrupt\ncni:\n  name: flannel\n  versions: [v0.28.10]\nkubernetes: [v1.37.2]\narch: [amd64]\nprovider: kind\nnodes: 2\n")
	vm := writeFile(t, "name: interrupt-vm\ncni:\n  name: flannel\n  versions: [v0.28.10]\nkubernetes: [v1.37.2]\narch: [arm64]\nprovider: qemu\nnodes: 2\n")
	// delay: how long after its marker the signal comes, so that the run
	// is inside the phase (node containers made, QEMU running), not at
	// its first line.
	type phase struct {
		name, scenario, marker string
		delay                  time.Duration
		extra                  []string
	}
	phases := []phase{
		{"images", kind, `▶ images for \[`, 0, nil},
		{"cluster create", kind, `\] ▶ create cluster `, 10 * time.Second, nil},
		{"VM boot", vm, `VM \S+ booting`, 8 * time.Second, nil},
		{"cni-install", kind, `\] ▶ cni-install$`, 0, nil},
		{"cni-ready", kind, `\] ▶ cni-ready$`, 0, nil},
		{"checks", kind, `\] ▶ check PodToPodAcrossNodes$`, 0, nil},
		{"soak", kind, `\] ▶ soak$`, 10 * time.Second, []string{"--soak", "5m"}},
	}
	full := os.Getenv("CNIMATRIX_INTERRUPT_FULL") != ""
	var table []string
	for i, ph := range phases {
		sigs := []syscall.Signal{syscall.SIGINT, syscall.SIGTERM}
		if !full {
			sigs = sigs[i%2 : i%2+1]
		}
		for _, sig := range sigs {
			t.Run(ph.name+"/"+sig.String(), func(t *testing.T) {
				r := startRun(t, ph.scenario, ph.marker, ph.delay, sig, ph.extra...)
				left := r.leftovers()
				row := fmt.Sprintf("%-14s %-10s exit %d after %-6s leftovers: %s; matrix: %s",
					ph.name, sig, r.code, r.afterSignal.Truncate(time.Second), orNone(left), r.matrixState(t))
				table = append(table, row)
				t.Log(row)
				for _, l := range left {
					t.Errorf("left after %s in %s: %s", sig, ph.name, l)
				}
			})
		}
	}
	// SIGKILL inside cluster create (node containers made) and inside VM
	// boot (QEMU and its tap running): gc must remove what the run left.
	for _, ph := range []phase{phases[1], phases[2]} {
		t.Run(ph.name+"/SIGKILL then gc", func(t *testing.T) {
			r := startRun(t, ph.scenario, ph.marker, ph.delay, syscall.SIGKILL)
			killedLeft := r.leftovers()
			out, err := cliCommand(ctx, "gc", "--out", r.out).CombinedOutput()
			if err != nil {
				t.Fatalf("gc: %v\n%s", err, out)
			}
			left := r.leftovers()
			row := fmt.Sprintf("%-14s %-10s killed; left: %s; after gc: %s", ph.name, "SIGKILL", orNone(killedLeft), orNone(left))
			table = append(table, row)
			t.Log(row)
			for _, l := range left {
				t.Errorf("left after SIGKILL and gc: %s", l)
			}
		})
	}
	t.Logf("phase x signal -> leftovers:\n%s", strings.Join(table, "\n"))
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// interruptedRun is a `cnimatrix run` that got a signal once its log
// matched a marker.
type interruptedRun struct {
	out         string
	log         string
	code        int
	afterSignal time.Duration // from the signal to the process's end
	runID       string
	network     string
	blobs       string
	clusters    []string
	taps        []string
}

var (
	runNetworkRe = regexp.MustCompile(`network (cnimatrix-net-([0-9a-f]+))`)
	runBlobsRe   = regexp.MustCompile(`blobs in (\S+)\)`)
	runClusterRe = regexp.MustCompile(`cnimatrix-[0-9a-f]{8}-[0-9a-f]+`)
	runTapRe     = regexp.MustCompile(`tap (cmx[0-9a-f]+)`)
)

func startRun(t *testing.T, scenario, marker string, delay time.Duration, sig syscall.Signal, extra ...string) *interruptedRun {
	t.Helper()
	r := &interruptedRun{out: t.TempDir()}
	cmd := cliCommand(context.Background(), append([]string{"run", scenario, "--out", r.out}, extra...)...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(marker)
	var mu sync.Mutex
	var log bytes.Buffer
	var signalled time.Time
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			log.WriteString(line + "\n")
			if signalled.IsZero() && re.MatchString(line) {
				signalled = time.Now().Add(delay)
				time.AfterFunc(delay, func() { _ = cmd.Process.Signal(sig) })
			}
			mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); pw.Close() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(20 * time.Minute):
		_ = cmd.Process.Kill()
		err = <-done
		t.Errorf("the run did not end")
	}
	<-scanned
	mu.Lock()
	defer mu.Unlock()
	r.log = log.String()
	if signalled.IsZero() {
		t.Fatalf("the run ended (%v) before its log showed %q:\n%s", err, marker, r.log)
	}
	r.afterSignal = time.Since(signalled)
	r.code = cmd.ProcessState.ExitCode()
	if m := runNetworkRe.FindStringSubmatch(r.log); m != nil {
		r.network, r.runID = m[1], m[2]
	}
	if m := runBlobsRe.FindStringSubmatch(r.log); m != nil {
		r.blobs = m[1]
	}
	if r.runID == "" {
		t.Fatalf("the log names no run network:\n%s", r.log)
	}
	seen := map[string]bool{}
	for _, c := range runClusterRe.FindAllString(r.log, -1) {
		if strings.HasSuffix(c, "-"+r.runID) && !seen[c] {
			seen[c] = true
			r.clusters = append(r.clusters, c)
		}
	}
	for _, m := range runTapRe.FindAllStringSubmatch(r.log, -1) {
		r.taps = append(r.taps, m[1])
	}
	if sig != syscall.SIGKILL && t.Failed() {
		t.Logf("run log:\n%s", r.log)
	}
	return r
}

// leftovers lists what the run made that still exists.
func (r *interruptedRun) leftovers() []string {
	var left []string
	if out, _ := exec.Command("docker", "ps", "-aq", "--filter", "name="+r.runID).Output(); strings.TrimSpace(string(out)) != "" {
		left = append(left, "containers "+strings.Join(strings.Fields(string(out)), " "))
	}
	if networkExists(r.network) {
		left = append(left, "network "+r.network)
	}
	if out, _ := exec.Command("pgrep", "-f", "qemu-system-aarch64 -name cnimatrix-[0-9a-f]*-"+r.runID).Output(); strings.TrimSpace(string(out)) != "" {
		left = append(left, "VM processes "+strings.Join(strings.Fields(string(out)), " "))
	}
	for _, tap := range r.taps {
		if _, err := net.InterfaceByName(tap); err == nil {
			left = append(left, "tap "+tap)
		}
	}
	if r.blobs != "" && fileExists(r.blobs) {
		left = append(left, "registry blobs "+r.blobs)
	}
	for _, c := range r.clusters {
		if fileExists(filepath.Join(r.out, "clusters", c)) {
			left = append(left, "work dir clusters/"+c)
		}
	}
	if lock := filepath.Join(cluster.RunLockDir, r.runID+".lock"); fileExists(lock) {
		left = append(left, "run lock "+lock)
	}
	return left
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// matrixState says what matrix.json holds, or why it is not valid.
func (r *interruptedRun) matrixState(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.out, "matrix.json"))
	if err != nil {
		t.Errorf("no matrix after the interrupt: %v", err)
		return "missing"
	}
	var m struct{ Results []matrix.Result }
	if err := json.Unmarshal(b, &m); err != nil {
		t.Errorf("matrix.json is not valid JSON: %v", err)
		return "invalid"
	}
	if len(m.Results) != 1 {
		t.Errorf("matrix has %d results, want 1", len(m.Results))
		return "wrong"
	}
	res := m.Results[0]
	if res.Outcome != matrix.Unknown {
		t.Errorf("interrupted cell %s is %s (%s), want unknown", res.ID, res.Outcome, res.Reason)
	}
	return fmt.Sprintf("valid, cell %s", res.Outcome)
}
