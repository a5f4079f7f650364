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
	if dir, ok := above(wd); ok {
		return dir, nil
	}
	// The binary built into a checkout (bin/cnimatrix) knows its tree when
	// it is run from anywhere else.
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err == nil {
		if dir, ok := above(filepath.Dir(exe)); ok {
			return dir, nil
		}
	}
	return "", errors.New("find cnimatrix source tree (the manifests, fixtures and image recipes cnimatrix ships): no go.mod of module " + Module +
		" at or above " + wd + " or the cnimatrix binary; run it from a checkout, or set CNIMATRIX_ROOT to one")
}

// above finds the tree at dir or above it.
func above(dir string) (string, bool) {
	for ; ; dir = filepath.Dir(dir) {
		if isRepoRoot(dir) {
			return dir, true
		}
		if filepath.Dir(dir) == dir {
			return "", false
		}
	}
}

func isRepoRoot(dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	return err == nil && modfile.ModulePath(data) == Module
}
