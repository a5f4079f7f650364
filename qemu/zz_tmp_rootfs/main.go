package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/images"
	"github.com/cnimatrix/cnimatrix/internal/logx"
)

func main() {
	c, _ := images.NewCache(images.DefaultCacheDir(), logx.Stderr(true))
	t0 := time.Now()
	p, err := c.DebianRootfs(context.Background(), images.RootfsSpec{Arch: "arm64", Suite: "bookworm", Variant: "minbase", Packages: []string{
		"systemd", "systemd-sysv", "udev", "dbus", "iptables", "iproute2", "kmod", "ca-certificates", "conntrack", "ethtool", "socat",
		"util-linux", "mount", "procps", "runc", "containernetworking-plugins", "iputils-ping",
	}})
	fmt.Println(p, err, time.Since(t0))
	if err != nil {
		os.Exit(1)
	}
}
