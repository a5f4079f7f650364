// Command pause is the sandbox ("pause") container of cnimatrix's pods: it
// holds the pod's namespaces open, and as PID 1 of a shared PID namespace it
// reaps orphaned zombies. It exits cleanly on SIGINT or SIGTERM, which the
// runtime sends when the pod goes away.
//
// It is built by images.Cache.Pause for each architecture, from this file
// alone (standard library only), so the sandbox image never has to be pulled.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version is stamped by the build (-X main.version=...).
var version = "dev"

func main() {
	// First thing: until Notify, SIGINT/SIGTERM kill by default action.
	// Buffered so a burst of SIGCHLDs while reaping collapses into one more
	// round rather than being lost: one wakeup reaps every waitable child.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for _, a := range os.Args[1:] {
		if a == "-v" || a == "--version" {
			fmt.Printf("cnimatrix pause %s\n", version)
			return
		}
	}
	if os.Getpid() != 1 {
		// Same courtesy as the upstream pause: reaping only works as PID 1
		// (or as a subreaper), but there is no harm in running anyway.
		fmt.Fprintln(os.Stderr, "pause: warning: not PID 1, zombies of this namespace will not be reaped")
	}

	for sig := range sigs {
		switch sig {
		case syscall.SIGCHLD:
			reap()
		default:
			fmt.Fprintf(os.Stderr, "pause: shutting down, got %v\n", sig)
			os.Exit(0)
		}
	}
}

// reap collects every exited child without blocking.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
	}
}
