// Command flexvol is the program of the seed fixtures (images.FlexvolImages),
// in the spirit of Calico's pod2daemon-flexvol: run with "install" as an
// init container, it copies itself into a hostPath directory as a
// FlexVolume driver and exits 0; run by the kubelet as that driver, it
// answers the FlexVolume calls (init: success, without attach support).
//
// It is built by images.Cache.Flexvol for each architecture from this file
// alone (standard library only). The fixtures put the binary of one
// architecture into an image that claims another, as the 2019 seed's images
// did, so a node of the wrong machine fails to exec it.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
)

// version is stamped by the build (-X main.version=...).
var version = "dev"

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "install" {
		os.Exit(install(args[1:]))
	}
	os.Exit(driver(os.Stdout, args))
}

// install copies this executable to DEST/NAME, through a temporary file and
// a rename, so the kubelet never runs a half-written driver.
func install(args []string) int {
	fs := flag.NewFlagSet("flexvol install", flag.ContinueOnError)
	dest := fs.String("dest", "/host/driver", "directory to install the driver into (a hostPath)")
	name := fs.String("name", "flexvol", "file name of the driver (the kubelet runs <vendor>~<name>/<name>)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "flexvol install: find own executable: %v\n", err)
		return 1
	}
	n, err := copyFile(self, *dest, *name)
	if err != nil {
		fmt.Fprintf(os.Stderr, "flexvol install: %v\n", err)
		return 1
	}
	fmt.Printf("flexvol %s (linux/%s): installed %s (%d bytes)\n", version, runtime.GOARCH, filepath.Join(*dest, *name), n)
	return 0
}

func copyFile(src, dir, name string) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", src, err)
	}
	defer in.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("create %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, "."+name+".tmp-")
	if err != nil {
		return 0, fmt.Errorf("create temporary file in %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	n, err := io.Copy(tmp, in)
	if err == nil {
		err = tmp.Chmod(0o755)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return 0, fmt.Errorf("install %s: %w", filepath.Join(dir, name), err)
	}
	return n, nil
}

// driverStatus is the FlexVolume reply.
type driverStatus struct {
	Status       string          `json:"status"`
	Message      string          `json:"message,omitempty"`
	Capabilities map[string]bool `json:"capabilities,omitempty"`
}

// driver answers the kubelet: "init" succeeds and says the driver needs no
// attach/detach; every other call is not supported, which the kubelet
// accepts for optional calls.
func driver(w io.Writer, args []string) int {
	st := driverStatus{Status: "Not supported", Message: "cnimatrix flexvol fixture supports only init"}
	code := 1
	if len(args) > 0 && args[0] == "init" {
		st = driverStatus{Status: "Success", Capabilities: map[string]bool{"attach": false}}
		code = 0
	}
	if err := json.NewEncoder(w).Encode(st); err != nil {
		return 1
	}
	return code
}
