package calicodata

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindReadsTheRealData(t *testing.T) {
	wd, _ := os.Getwd()
	d := FindForTest(t, filepath.Join(wd, "..", ".."))
	tags := d.Tags()
	if len(tags) < 9 || tags[0] != "v3.24.6" || tags[len(tags)-1] != "v3.32.1" {
		t.Errorf("tags %v", tags)
	}
	if got := strings.Join(d.Files("v3.30.7"), " "); got != "calico.yaml custom-resources.yaml operator-crds.yaml tigera-operator.yaml" {
		t.Errorf("v3.30.7 files: %s", got)
	}
	src, err := d.Source("v3.32.1")
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(src.Libbpf) != "libbpf-v1.6.2.tar.gz" || filepath.Base(src.Archive) != "calico-v3.32.1.tar.gz" {
		t.Errorf("source %+v", src)
	}
	if _, err := d.Source("v3.31.7"); err == nil || !strings.Contains(err.Error(), "calico-v3.31.7.tar.gz") {
		t.Errorf("a release without its archive: %v", err)
	}
}

func TestFindSaysWhereItLooked(t *testing.T) {
	t.Setenv(Env, t.TempDir())
	_, err := Find("/nowhere")
	if err == nil || !strings.Contains(err.Error(), "SHA256SUMS") || !strings.Contains(err.Error(), Env) {
		t.Errorf("missing data: %v", err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte("abc  x\n"), 0o644)
	t.Setenv(Env, dir)
	if _, err := Find(""); err == nil || !strings.Contains(err.Error(), "SHA256SUMS:1") {
		t.Errorf("bad SHA256SUMS: %v", err)
	}
}
