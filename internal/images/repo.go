package images

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/mod/modfile"
)

// RepoModule is the module path that identifies the cnimatrix source tree.
const RepoModule = "github.com/cnimatrix/cnimatrix"

// RepoRoot finds the cnimatrix source tree, whose files some products are
// built from (our pause, say): $CNIMATRIX_ROOT when set, else the nearest
// directory at or above the working directory whose go.mod declares
// RepoModule. Tests run in their package directory, so they find it too.
func RepoRoot() (string, error) {
	if root := os.Getenv("CNIMATRIX_ROOT"); root != "" {
		if !isRepoRoot(root) {
			return "", fmt.Errorf("CNIMATRIX_ROOT=%s: no go.mod of module %s there", root, RepoModule)
		}
		return filepath.Abs(root)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find cnimatrix source tree: %w", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if isRepoRoot(dir) {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			break
		}
	}
	return "", errors.New("find cnimatrix source tree: no go.mod of module " + RepoModule +
		" at or above " + wd + "; run from the repository or set CNIMATRIX_ROOT")
}

func isRepoRoot(dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	return err == nil && modfile.ModulePath(data) == RepoModule
}
