package kind

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// freezerRoot is the cgroup v1 freezer hierarchy.
const freezerRoot = "/sys/fs/cgroup/freezer"

// thawNodes thaws every frozen cgroup v1 freezer under the node
// containers, and says how many it thawed. On cgroup v1, runc inside a kind
// node freezes a pod container's cgroup while it sets the container's
// limits; a node deleted at that moment (a cancelled create) leaves that
// cgroup FROZEN, its processes cannot die, and Docker's kill of the node
// waits forever ("did not receive an exit event"). Seen here once in a
// cancelled create; thawing it let `docker rm -f` finish at once.
func thawNodes(ctx context.Context, names []string) (int, error) {
	if _, err := os.Stat(freezerRoot); err != nil {
		return 0, nil // cgroup v2 or no freezer: nothing can be left frozen
	}
	out, err := docker(ctx, append([]string{"inspect", "-f", "{{.Id}}"}, names...)...)
	if err != nil && !isNoSuchObject(err) {
		return 0, err
	}
	thawed := 0
	for _, id := range strings.Fields(string(out)) {
		// cgroupfs driver: docker/<id>; systemd driver: system.slice/docker-<id>.scope.
		for _, dir := range []string{filepath.Join(freezerRoot, "docker", id), filepath.Join(freezerRoot, "system.slice", "docker-"+id+".scope")} {
			n, err := thawTree(dir)
			thawed += n
			if err != nil {
				return thawed, err
			}
		}
	}
	return thawed, nil
}

// thawTree writes THAWED to every freezer.state under dir that is not.
func thawTree(dir string) (int, error) {
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if d.IsDir() || d.Name() != "freezer.state" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil || strings.TrimSpace(string(b)) == "THAWED" {
			return nil // thawed already, or gone meanwhile
		}
		if err := os.WriteFile(path, []byte("THAWED"), 0o644); err != nil {
			return fmt.Errorf("thaw %s: %w", filepath.Dir(path), err)
		}
		n++
		return nil
	})
	if os.IsNotExist(err) {
		return n, nil
	}
	return n, err
}
