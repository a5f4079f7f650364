package archaudit

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"strings"
)

// machine is what an arch's executables are: ELF machine, class and byte
// order (ppc64 and ppc64le share a machine number).
type machine struct {
	name  string
	m     elf.Machine
	class elf.Class
	data  elf.Data
}

// archMachines maps Go/OCI arch names to the ELF machine their binaries have.
var archMachines = map[string]machine{
	"amd64":   {"x86-64", elf.EM_X86_64, elf.ELFCLASS64, elf.ELFDATA2LSB},
	"arm64":   {"aarch64", elf.EM_AARCH64, elf.ELFCLASS64, elf.ELFDATA2LSB},
	"arm":     {"arm", elf.EM_ARM, elf.ELFCLASS32, elf.ELFDATA2LSB},
	"386":     {"i386", elf.EM_386, elf.ELFCLASS32, elf.ELFDATA2LSB},
	"ppc64le": {"ppc64le", elf.EM_PPC64, elf.ELFCLASS64, elf.ELFDATA2LSB},
	"s390x":   {"s390x", elf.EM_S390, elf.ELFCLASS64, elf.ELFDATA2MSB},
	"riscv64": {"riscv64", elf.EM_RISCV, elf.ELFCLASS64, elf.ELFDATA2LSB},
}

func (m machine) same(o machine) bool {
	return m.m == o.m && m.class == o.class && m.data == o.data
}

// header is what the first bytes of a file say about it.
type header struct {
	isELF   bool
	exec    bool // ELF of type EXEC or DYN: something that can be run
	machine machine
	shebang string // the "#!" line without "#!", for scripts
}

// headerPrefix is how many bytes of a file are read: an ELF header's
// e_machine ends at byte 20, and a "#!" line is short.
const headerPrefix = 256

// parseHeader reads an ELF identification and e_type/e_machine by hand, so
// only the first 20 bytes of a file are needed (debug/elf wants the whole
// file to be seekable).
func parseHeader(b []byte) *header {
	if bytes.HasPrefix(b, []byte("#!")) {
		line := b[2:]
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line = line[:i]
		}
		return &header{shebang: strings.TrimSpace(string(line))}
	}
	if len(b) < 20 || !bytes.HasPrefix(b, []byte(elf.ELFMAG)) {
		return nil
	}
	class, data := elf.Class(b[elf.EI_CLASS]), elf.Data(b[elf.EI_DATA])
	var order binary.ByteOrder
	switch data {
	case elf.ELFDATA2LSB:
		order = binary.LittleEndian
	case elf.ELFDATA2MSB:
		order = binary.BigEndian
	default:
		return nil
	}
	if class != elf.ELFCLASS32 && class != elf.ELFCLASS64 {
		return nil
	}
	typ := elf.Type(order.Uint16(b[16:18]))
	m := elf.Machine(order.Uint16(b[18:20]))
	mc := machine{m: m, class: class, data: data}
	mc.name = machineName(mc)
	return &header{isELF: true, exec: typ == elf.ET_EXEC || typ == elf.ET_DYN, machine: mc}
}

// machineName spells a machine the way `file` and `uname -m` do.
func machineName(mc machine) string {
	for _, k := range KnownArches() {
		if a := archMachines[k]; a.same(mc) {
			return a.name
		}
	}
	s := strings.ToLower(strings.TrimPrefix(mc.m.String(), "EM_"))
	switch mc.m {
	case elf.EM_PPC64:
		if mc.data == elf.ELFDATA2MSB {
			return "ppc64"
		}
	case elf.EM_AARCH64, elf.EM_X86_64:
		if mc.class == elf.ELFCLASS32 {
			return s + " (32-bit)"
		}
	}
	return s
}
