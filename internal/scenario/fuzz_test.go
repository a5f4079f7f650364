package scenario

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cnimatrix/cnimatrix/internal/catalog"
	"github.com/cnimatrix/cnimatrix/internal/repo"
)

// FuzzParse feeds the scenario loader what a person might write: every
// scenario of the tree as seed, mutated. Whatever the input, Parse returns
// a scenario or an error naming the file (never a panic, never an error
// without its file), and a scenario it returns expands into cells with
// distinct IDs.
//
//	go test -fuzz FuzzParse -fuzztime 10m ./internal/scenario
func FuzzParse(f *testing.F) {
	root, err := repo.Root()
	if err != nil {
		f.Fatal(err)
	}
	for _, glob := range []string{"scenarios/*.yaml", "e2e/testdata/*.yaml"} {
		paths, _ := filepath.Glob(filepath.Join(root, glob))
		for _, p := range paths {
			data, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	cat, err := catalog.Load()
	if err != nil {
		f.Fatal(err)
	}
	dir := f.TempDir()
	ManifestCacheDir = dir // nothing is cached: Calico versions say how to fetch them
	f.Cleanup(func() { ManifestCacheDir = "" })
	path := filepath.Join(dir, "s.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(path, data, cat, root)
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if line != "" && !strings.HasPrefix(strings.TrimSpace(line), path) {
					t.Fatalf("error line without the file: %q (of %q)", line, err)
				}
			}
			return
		}
		seen := map[string]bool{}
		for _, c := range s.Cells() {
			if seen[c.ID()] {
				t.Fatalf("cell %s twice", c.ID())
			}
			seen[c.ID()] = true
		}
	})
}
