package engine

import (
	"os"
	"strings"

	"github.com/cnimatrix/cnimatrix/internal/matrix"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

// HostInfo describes this host for the matrix.
func HostInfo(version string) matrix.Host {
	h := matrix.Host{Arch: scenario.HostArch(), Version: version, Cgroup: "v2"}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
		h.Cgroup = "v1"
	}
	h.Hostname, _ = os.Hostname()
	return h
}
