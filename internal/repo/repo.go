// Package repo finds the cnimatrix source tree, which fixtures, local
// manifests and some image builds are made from.
package repo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/mod/modfile"
)

// Module is the module path that identifies the cnimatrix source tree.
const Module = "github.com/cnimatrix/cnimatrix"

// Root finds the cnimatrix source tree, whose files some products are
// built from (our pause, say): $CNIMATRIX_ROOT when set, else the nearest
// directory at or above the working directory whose go.mod declares
// Module. Tests run in their package directory, so they find it too.
func Root() (string, error) {
	if root := os.Getenv("CNIMATRIX_ROOT"); root != "" {
		if !isRepoRoot(root) {
			return "", fmt.Errorf("CNIMATRIX_ROOT=%s: no go.mod of module %s there", root, Module)
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
	return "", errors.New("find cnimatrix source tree: no go.mod of module " + Module +
		" at or above " + wd + "; run from the repository or set CNIMATRIX_ROOT")
}

func isRepoRoot(dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	return err == nil && modfile.ModulePath(data) == Module
}
