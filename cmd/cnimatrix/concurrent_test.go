package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	kindprov "github.com/cnimatrix/cnimatrix/internal/cluster/kind"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

// TestMain lets a test run the CLI as a process of its own: the test binary
// with CNIMATRIX_TEST_MAIN=1 is cnimatrix.
func TestMain(m *testing.M) {
	if os.Getenv("CNIMATRIX_TEST_MAIN") == "1" {
		main()
	}
	os.Exit(m.Run())
}

// cliCommand is `cnimatrix args...` run as its own process (see TestMain).
func cliCommand(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), "CNIMATRIX_TEST_MAIN=1")
	return cmd
}

// Two `cnimatrix run`s on one host at once, as two CI jobs or a laptop
// beside CI would: each gets its own run ID, network, registry (port and
// blob dir), clusters and lock, both pass, and neither leaves anything of its
// own behind. The shared build cache is written by both.
func TestTwoConcurrentRunsDoNotInterfere(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two real kind cells at once")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	if err := kindprov.CheckDocker(ctx); err != nil {
		t.Skip(err)
	}
	scen := writeFile(t, "name: concurrent\ncni:\n  name: flannel\n  versions: [v0.28.10]\nkubernetes: [v1.37.2]\narch: [amd64]\nprovider: kind\nnodes: 2\ntimeouts:\n  cluster: 10m\n  cniReady: 8m\n  checks: 6m\n")
	type run struct {
		out, log string
		err      error
	}
	runs := make([]run, 2)
	var wg sync.WaitGroup
	for i := range runs {
		runs[i].out = t.TempDir()
		wg.Go(func() {
			cmd := cliCommand(ctx, "run", scen, "--out", runs[i].out)
			var b bytes.Buffer
			cmd.Stdout, cmd.Stderr = &b, &b
			runs[i].err = cmd.Run()
			runs[i].log = b.String()
		})
	}
	wg.Wait()
	networkRe := regexp.MustCompile(`network (cnimatrix-net-[0-9a-f]+)`)
	blobsRe := regexp.MustCompile(`blobs in (\S+)\)`)
	seen := map[string]bool{}
	for i, r := range runs {
		if r.err != nil {
			t.Errorf("run %d: %v\n%s", i, r.err, r.log)
			continue
		}
		var m struct{ Results []matrix.Result }
		data, err := os.ReadFile(filepath.Join(r.out, "matrix.json"))
		if err == nil {
			err = json.Unmarshal(data, &m)
		}
		if err != nil || len(m.Results) != 1 || m.Results[0].Outcome != matrix.Pass {
			t.Errorf("run %d: matrix %v %+v", i, err, m.Results)
		}
		netw := networkRe.FindStringSubmatch(r.log)
		blobs := blobsRe.FindStringSubmatch(r.log)
		if netw == nil || blobs == nil {
			t.Errorf("run %d: its log names no network or registry:\n%s", i, r.log)
			continue
		}
		for _, own := range []string{netw[1], blobs[1], m.Results[0].ClusterName} {
			if seen[own] {
				t.Errorf("both runs used %s", own)
			}
			seen[own] = true
		}
		if networkExists(netw[1]) {
			t.Errorf("run %d left its network %s", i, netw[1])
		}
		if _, err := os.Stat(blobs[1]); err == nil {
			t.Errorf("run %d left its registry's blobs %s", i, blobs[1])
		}
		if out, _ := exec.Command("docker", "ps", "-aq", "--filter", "name="+m.Results[0].ClusterName).Output(); strings.TrimSpace(string(out)) != "" {
			t.Errorf("run %d left containers of cluster %s", i, m.Results[0].ClusterName)
		}
	}
}

func networkExists(name string) bool {
	return exec.Command("docker", "network", "inspect", name).Run() == nil
}
