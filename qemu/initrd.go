package qemu

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// writeInitramfs writes a gzip newc cpio archive: the static init, the
// modules needed to reach the root disk (with their dependencies, in load
// order) and /modules.list naming them in that order.
func writeInitramfs(root, kver, initBin string, want []string, out string) error {
	modDir := filepath.Join(root, "usr/lib/modules", kver)
	order, err := moduleLoadOrder(filepath.Join(modDir, "modules.dep"), want)
	if err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	w := &cpioWriter{w: zw}
	for _, d := range []string{".", "dev", "proc", "sys", "newroot", "lib", "lib/modules"} {
		w.dir(d)
	}
	// The kernel opens /dev/console for init's stdio before init runs.
	w.charDev("dev/console", 0o600, 5, 1)
	if err := w.fileFrom("init", 0o755, initBin); err != nil {
		return err
	}
	var list strings.Builder
	for _, rel := range order {
		if strings.HasSuffix(rel, ".ko.xz") || strings.HasSuffix(rel, ".ko.zst") || strings.HasSuffix(rel, ".ko.gz") {
			return fmt.Errorf("module %s is compressed; the initramfs loads plain .ko files only", rel)
		}
		dst := "lib/modules/" + path.Base(rel)
		if err := w.fileFrom(dst, 0o644, filepath.Join(modDir, rel)); err != nil {
			return err
		}
		list.WriteString("/" + dst + "\n")
	}
	w.file("modules.list", 0o644, []byte(list.String()))
	w.trailer()
	if w.err != nil {
		return fmt.Errorf("write %s: %w", out, w.err)
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return f.Close()
}

// moduleLoadOrder reads a modules.dep and returns the module files (paths
// relative to the modules directory) to load for want, dependencies first.
// Wanted modules the kernel has built in (absent from modules.dep) are
// skipped.
func moduleLoadOrder(depFile string, want []string) ([]string, error) {
	f, err := os.Open(depFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	deps := map[string][]string{}
	byName := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		mod, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		deps[mod] = strings.Fields(rest)
		byName[moduleName(mod)] = mod
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	var order []string
	seen := map[string]bool{}
	var visit func(mod string)
	visit = func(mod string) {
		if seen[mod] {
			return
		}
		seen[mod] = true
		for _, d := range deps[mod] {
			visit(d)
		}
		order = append(order, mod)
	}
	for _, n := range want {
		if mod, ok := byName[moduleName(n)]; ok {
			visit(mod)
		}
	}
	if len(order) == 0 {
		return nil, fmt.Errorf("none of the modules %s in %s", strings.Join(want, ", "), depFile)
	}
	return order, nil
}

// moduleName is the kernel's name of a module file or name: no directory,
// no .ko suffix, dashes as underscores.
func moduleName(s string) string {
	s = path.Base(s)
	if i := strings.Index(s, ".ko"); i >= 0 {
		s = s[:i]
	}
	return strings.ReplaceAll(s, "-", "_")
}

// cpioWriter writes the "new ASCII" (newc) cpio format the kernel unpacks.
// The first error sticks.
type cpioWriter struct {
	w   io.Writer
	ino uint32
	err error
}

const (
	cpioDir  = 0o040000
	cpioReg  = 0o100000
	cpioChar = 0o020000
)

func (c *cpioWriter) header(name string, mode uint32, size int, major, minor uint32) {
	if c.err != nil {
		return
	}
	c.ino++
	nlink := uint32(1)
	if mode&cpioDir != 0 {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, major, minor, len(name)+1, 0)
	c.write([]byte(hdr + name + "\x00"))
	c.pad(len(hdr) + len(name) + 1)
}

func (c *cpioWriter) write(b []byte) {
	if c.err == nil {
		_, c.err = c.w.Write(b)
	}
}

// pad aligns to 4 bytes after n bytes.
func (c *cpioWriter) pad(n int) {
	if r := n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

func (c *cpioWriter) dir(name string) { c.header(name, cpioDir|0o755, 0, 0, 0) }

func (c *cpioWriter) charDev(name string, perm, major, minor uint32) {
	c.header(name, cpioChar|perm, 0, major, minor)
}

func (c *cpioWriter) file(name string, perm uint32, data []byte) {
	c.header(name, cpioReg|perm, len(data), 0, 0)
	c.write(data)
	c.pad(len(data))
}

func (c *cpioWriter) fileFrom(name string, perm uint32, src string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	c.file(name, perm, data)
	return nil
}

func (c *cpioWriter) trailer() { c.header("TRAILER!!!", 0, 0, 0, 0) }
