package catalog

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/cnimatrix/cnimatrix/internal/calicodata"
	"github.com/cnimatrix/cnimatrix/internal/repo"
)

// realData returns the upstream Calico files beside the source tree, or
// skips (fails under CNIMATRIX_REQUIRE_CALICO_DATA) when they are absent.
func realData(t *testing.T) *calicodata.Data {
	t.Helper()
	root, _ := repo.Root()
	return calicodata.FindForTest(t, root)
}

// TestPinsMatchUpstreamFiles recomputes the sha256 of every real upstream
// file and compares it with SHA256SUMS and with the catalog's pin: every file
// the catalog lists for a release the data holds must be pinned to exactly
// those bytes.
func TestPinsMatchUpstreamFiles(t *testing.T) {
	d := realData(t)
	c, err := LoadCalico()
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, tag := range d.Tags() {
		for _, file := range d.Files(tag) {
			data, err := os.ReadFile(d.ManifestPath(tag, file))
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(data)
			if got := hex.EncodeToString(sum[:]); got != d.SumFor(tag, file) {
				t.Errorf("%s %s: file sha256 %s, SHA256SUMS says %s", tag, file, got, d.SumFor(tag, file))
			}
		}
		v, err := c.Version(tag)
		if err != nil {
			t.Errorf("the data holds %s, the catalog does not: %v", tag, err)
			continue
		}
		for _, f := range v.Files() {
			want := d.SumFor(tag, f.Name())
			switch {
			case want == "":
				t.Errorf("%s %s: the catalog lists a file upstream's tag does not have (%s)", tag, f.Name(), f.URL)
			case f.SHA256 != want:
				t.Errorf("%s %s: pinned %q, upstream file is %s", tag, f.Name(), f.SHA256, want)
			case !strings.HasSuffix(f.URL, "/"+tag+"/manifests/"+f.Name()):
				t.Errorf("%s %s: URL %s is not the tag's manifests/ file", tag, f.Name(), f.URL)
			}
			checked++
		}
	}
	if checked < 30 {
		t.Errorf("checked %d pinned files, want the 30 of v3.24.6..v3.32.1", checked)
	}
	t.Logf("%d catalog files pinned to the upstream bytes", checked)
}
