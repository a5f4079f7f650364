package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	kindprov "github.com/cnimatrix/cnimatrix/internal/cluster/kind"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

// A real failing cell whose CNI pods print every kind of secret a harness
// can come across (testdata/planted-secrets): an API token from their
// environment, a private key and a kubeconfig from a mounted Secret, a
// kubeadm join command, their own service account token. The cell fails,
// its artifacts hold those pods' logs, and not one secret is in the
// artifacts, the matrix files or the `-v` log.
func TestPlantedSecretsStayOutOfEverything(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a real kind cell")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	if err := kindprov.CheckDocker(ctx); err != nil {
		t.Skip(err)
	}
	scen, err := filepath.Abs("testdata/planted-secrets/scenario.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	arts := filepath.Join(out, "artifacts")
	cmd := cliCommand(ctx, "run", scen, "-v", "--out", out, "--artifacts", arts)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	runErr := cmd.Run()

	var m struct{ Results []matrix.Result }
	data, err := os.ReadFile(filepath.Join(out, "matrix.json"))
	if err == nil {
		err = json.Unmarshal(data, &m)
	}
	if err != nil || len(m.Results) != 1 {
		t.Fatalf("matrix: %v %+v (run: %v)\n%s", err, m.Results, runErr, log.String())
	}
	if r := m.Results[0]; r.Outcome != matrix.Fail {
		t.Fatalf("cell %s: %s %s, want fail (the CNI pods crash)\n%s", r.ID, r.Outcome, r.Reason, log.String())
	}

	// The test sees what a leak would look like: the pods' logs are in the
	// bundle, with their secrets replaced.
	logs, _ := filepath.Glob(filepath.Join(arts, "*", "logs", "kube-flannel_kube-flannel-ds-*"))
	collected := false
	for _, p := range logs {
		b, _ := os.ReadFile(p)
		if strings.Contains(string(b), "fixture: planted secrets printed") && strings.Contains(string(b), "REDACTED") {
			collected = true
		}
	}
	if !collected {
		t.Fatalf("no CNI pod log with the planted lines in the artifacts (%v)", logs)
	}

	planted := []string{
		"cnmxPlantedApiToken0451",                    // env value, echoed with "token:" and as a Bearer header
		"MHcCAQEEIPlantedPrivateKeyBodyForCnimatrix", // private key body
		"BEGIN EC PRIVATE KEY",
		"pl4nt3.cnmxjoin00000042",          // kubeadm join token
		"Y25teFBsYW50ZWRDbGllbnRLZXlEYXRh", // kubeconfig client-key-data
		"cnmxPlantedKubeconfigToken77",     // kubeconfig user token
	}
	jwt := regexp.MustCompile(`eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}`) // the pods' real service account token
	scan := func(where string, b []byte) {
		for _, s := range planted {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds planted secret %q", where, s)
			}
		}
		if jwt.Match(b) {
			t.Errorf("%s holds a service account token", where)
		}
	}
	scan("the -v log", log.Bytes())
	files := 0
	err = filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		rel, _ := filepath.Rel(out, p)
		scan(rel, b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("scanned %d files (matrix and artifacts) and %d bytes of -v log", files, log.Len())
}
