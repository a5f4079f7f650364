package archaudit

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The file system of an image is its layers extracted in order, each
// deleting what its whiteouts name. The scan reads the layers top first:
// the first entry seen for a path is then the one that is there, lower
// entries for it (or under a deleted or replaced directory) are ignored, and
// the scan can stop as soon as the entrypoint is known. Only the first bytes
// of executables are kept, never a whole file or layer.

type entryKind uint8

const (
	kindDir entryKind = iota + 1
	kindFile
	kindSymlink
	kindHardlink
	kindDeleted // a whiteout from an upper layer
)

type entry struct {
	kind    entryKind
	layer   int    // index in the image's layer list; higher is upper
	link    string // symlink target as written; hardlink target from the root
	hdr     *header
	counted bool // is one of the scanned executables
}

// entrypoint is what one program of a container resolved to.
type entrypoint struct {
	decided bool
	binary  *Binary
	foreign bool
	note    string
}

// scan is the state of reading one image.
type scan struct {
	want  machine
	max   int
	progs []string
	argv0 map[string]string // program -> what runs ("" -> the image's entrypoint)
	pathE []string          // the image's PATH, root-relative
	dirs  map[string]bool   // bin directories whose executables are evidence
	wdir  string

	files  map[string]*entry
	opaque map[string]int // directory -> layer of its opaque whiteout
	layer  int            // layer being read

	quick        bool
	scanned      int
	foreignCount int
	foreign      []Binary // the first few, in the order found
	entrypoints  map[string]entrypoint
	watch        map[string]bool // names whose appearance may change a resolution
}

const maxForeignListed = 20

var errEnough = errors.New("enough evidence")

const defaultPATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// scanImage reads img's layers, top first, until every program's entrypoint
// is known and either max executables were read or every entrypoint is of
// another machine (then the rest of that layer is still read, for the
// binaries next to it).
//
// With quick, the scan stops as soon as every entrypoint is known: the
// caller only wants to name it.
func scanImage(ctx context.Context, img v1.Image, cfg *v1.ConfigFile, progs []string, want machine, max int, quick bool) (*scan, error) {
	s := newScan(cfg, progs, want, max)
	s.quick = quick
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("list layers: %w", err)
	}
	for i := len(layers) - 1; i >= 0; i-- {
		err := s.readLayer(ctx, i, layers[i])
		if errors.Is(err, errEnough) {
			return s, nil
		}
		if err != nil {
			return nil, err
		}
		if s.allForeign() {
			// The verdict is mislabeled whatever lies below; the layer just
			// read added the binaries next to the entrypoint to the evidence.
			return s, nil
		}
	}
	s.resolveAll(true)
	return s, nil
}

func newScan(cfg *v1.ConfigFile, progs []string, want machine, max int) *scan {
	s := &scan{
		want: want, max: max, progs: progs,
		argv0:       map[string]string{},
		dirs:        map[string]bool{},
		files:       map[string]*entry{},
		opaque:      map[string]int{},
		entrypoints: map[string]entrypoint{},
		watch:       map[string]bool{},
		wdir:        "/",
	}
	pathVar := defaultPATH
	for _, e := range cfg.Config.Env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			pathVar = v
		}
	}
	for _, d := range strings.Split(pathVar, ":") {
		if d = clean(d); d != "" {
			s.pathE = append(s.pathE, d)
			s.dirs[d] = true
		}
	}
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "usr/local/sbin"} {
		s.dirs[d] = true
	}
	if cfg.Config.WorkingDir != "" {
		s.wdir = cfg.Config.WorkingDir
	}
	for _, p := range progs {
		a := p
		if a == "" {
			// Kubernetes' command replaces ENTRYPOINT; without one the
			// image's ENTRYPOINT runs, or its CMD when there is none.
			switch {
			case len(cfg.Config.Entrypoint) > 0:
				a = cfg.Config.Entrypoint[0]
			case len(cfg.Config.Cmd) > 0:
				a = cfg.Config.Cmd[0]
			}
		}
		s.argv0[p] = a
	}
	s.resolveAll(false)
	return s
}

// clean makes a tar or absolute path root-relative: "./usr/bin/" -> "usr/bin".
func clean(p string) string {
	p = path.Clean("/" + p)
	return strings.TrimPrefix(p, "/")
}

func (s *scan) evidenceDir(dir string) bool {
	if s.dirs[dir] {
		return true
	}
	ok, _ := path.Match("opt/*/bin", dir)
	return ok
}

func (s *scan) readLayer(ctx context.Context, i int, l v1.Layer) error {
	s.layer = i
	desc := fmt.Sprintf("layer %d", i+1)
	if d, err := l.Digest(); err == nil {
		desc += " " + d.String()
	}
	rc, err := l.Uncompressed()
	if err != nil {
		return fmt.Errorf("open %s: %w", desc, err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	buf := make([]byte, headerPrefix)
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read %s: %w", desc, err)
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", desc, err)
		}
		changed, err := s.add(h, tr, buf)
		if err != nil {
			return fmt.Errorf("read %s: %s: %w", desc, h.Name, err)
		}
		if changed && s.done() {
			return errEnough
		}
	}
	return nil
}

// shadowed reports whether an entry for p in the current layer is hidden
// by upper layers: p itself is there already, or a parent was deleted,
// replaced by a non-directory, or made opaque.
func (s *scan) shadowed(p string) bool {
	if e := s.files[p]; e != nil && e.layer > s.layer {
		return true
	}
	for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
		if e := s.files[d]; e != nil && e.layer > s.layer && e.kind != kindDir {
			return true
		}
		if l, ok := s.opaque[d]; ok && l > s.layer {
			return true
		}
	}
	return false
}

// add records one tar entry and reports whether it may change what a
// program resolves to or the evidence.
func (s *scan) add(h *tar.Header, r io.Reader, buf []byte) (bool, error) {
	p := clean(h.Name)
	if p == "" {
		return false, nil
	}
	dir, base := path.Dir(p), path.Base(p)
	if dir == "." {
		dir = ""
	}
	if wh, ok := strings.CutPrefix(base, ".wh."); ok {
		if wh == ".wh..opq" {
			if _, seen := s.opaque[dir]; !seen && !s.shadowed(p) {
				s.opaque[dir] = s.layer
			}
			return true, nil
		}
		target := path.Join(dir, wh)
		if s.shadowed(target) {
			return false, nil
		}
		if e := s.files[target]; e != nil && e.layer == s.layer {
			// A whiteout only deletes from lower layers; the entry of this
			// layer stays.
			return false, nil
		}
		s.files[target] = &entry{kind: kindDeleted, layer: s.layer}
		return s.watch[wh], nil
	}
	if s.shadowed(p) {
		return false, nil
	}
	if old := s.files[p]; old != nil && old.counted {
		// The same path twice in one layer: the later entry wins.
		s.uncount(p, old)
	}
	e := &entry{layer: s.layer}
	switch h.Typeflag {
	case tar.TypeDir:
		e.kind = kindDir
	case tar.TypeSymlink:
		e.kind, e.link = kindSymlink, h.Linkname
	case tar.TypeLink:
		e.kind, e.link = kindHardlink, clean(h.Linkname)
	case tar.TypeReg:
		e.kind = kindFile
		if h.Size > 0 && (h.Mode&0o111 != 0 || s.evidenceDir(dir)) {
			n, err := io.ReadFull(r, buf[:min(int64(len(buf)), h.Size)])
			if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
				return false, err
			}
			e.hdr = parseHeader(buf[:n])
		}
	default:
		// Devices, fifos: nothing that runs, but they replace what was below.
		e.kind = kindFile
	}
	s.files[p] = e
	if e.hdr != nil && e.hdr.isELF && e.hdr.exec && s.evidenceDir(dir) {
		s.count(p, e)
	}
	return s.watch[base] || e.counted, nil
}

func (s *scan) count(p string, e *entry) {
	if e.counted || s.scanned >= s.max {
		return
	}
	e.counted = true
	s.scanned++
	if !e.hdr.machine.same(s.want) {
		s.foreignCount++
		if len(s.foreign) < maxForeignListed {
			s.foreign = append(s.foreign, Binary{Path: "/" + p, Machine: e.hdr.machine.name})
		}
	}
}

func (s *scan) uncount(p string, e *entry) {
	e.counted = false
	s.scanned--
	if !e.hdr.machine.same(s.want) {
		s.foreignCount--
		for i, b := range s.foreign {
			if b.Path == "/"+p {
				s.foreign = append(s.foreign[:i], s.foreign[i+1:]...)
				break
			}
		}
	}
}

// done resolves what is still open and reports whether the cap of
// executables is reached (or, for a quick scan, not needed) with every
// entrypoint known.
func (s *scan) done() bool {
	return s.resolveAll(false) && (s.quick || s.scanned >= s.max)
}

func (s *scan) isCounted(abs string) bool {
	e := s.files[strings.TrimPrefix(abs, "/")]
	return e != nil && e.counted
}

// allForeign reports whether every program is known to be of another
// machine.
func (s *scan) allForeign() bool {
	if !s.resolveAll(false) {
		return false
	}
	for _, ep := range s.entrypoints {
		if !ep.foreign {
			return false
		}
	}
	return true
}

// resolveAll tries to resolve every program; final means every layer was
// read, so what is not found is not there. It reports whether all are known.
func (s *scan) resolveAll(final bool) bool {
	all := true
	for _, p := range s.progs {
		if s.entrypoints[p].decided {
			continue
		}
		ep := s.resolve(s.argv0[p], final)
		if ep.decided {
			s.entrypoints[p] = ep
			if ep.binary != nil {
				// The entrypoint is evidence wherever it lives (/coredns,
				// /usr/lib/calico/bin/...).
				if e := s.files[strings.TrimPrefix(ep.binary.Path, "/")]; e != nil && e.hdr != nil {
					s.count(strings.TrimPrefix(ep.binary.Path, "/"), e)
				}
			}
		} else {
			all = false
		}
	}
	return all
}

type lookState int

const (
	unknown lookState = iota // not seen yet; a lower layer may have it
	found
	missing
)

// resolve follows argv0 through PATH, symbolic links and up to two "#!"
// interpreters to the binary that the kernel loads.
func (s *scan) resolve(argv0 string, final bool) entrypoint {
	if argv0 == "" {
		return entrypoint{decided: true, note: "the image has no entrypoint or command"}
	}
	var chain []string
	name := argv0
	for hop := 0; ; hop++ {
		p, cand, st := s.findProgram(name, final)
		switch st {
		case unknown:
			return entrypoint{}
		case missing:
			return entrypoint{decided: true, note: fmt.Sprintf("entrypoint %s not found in the image", describeChain(append(chain, name)))}
		}
		e := s.files[p]
		disp := "/" + p
		if name != disp {
			chain = append(chain, name)
			if cand != name && cand != disp {
				chain = append(chain, cand) // where PATH found it
			}
		}
		switch {
		case e.hdr == nil:
			return entrypoint{decided: true, note: fmt.Sprintf("entrypoint %s is neither an ELF executable nor a script", describeChain(append(chain, disp)))}
		case e.hdr.isELF:
			b := &Binary{Path: disp, Machine: e.hdr.machine.name}
			if len(chain) > 0 {
				b.Via = strings.Join(chain, " → ")
			}
			return entrypoint{decided: true, binary: b, foreign: !e.hdr.machine.same(s.want)}
		}
		// A script: the kernel runs its interpreter.
		fields := strings.Fields(e.hdr.shebang)
		if len(fields) == 0 || hop == 2 {
			return entrypoint{decided: true, note: fmt.Sprintf("entrypoint %s: cannot follow its #! line %q", describeChain(append(chain, disp)), e.hdr.shebang)}
		}
		chain = append(chain, disp+" (#!"+e.hdr.shebang+")")
		name = fields[0]
		if path.Base(name) == "env" && len(fields) > 1 && !strings.HasPrefix(fields[1], "-") {
			name = fields[1]
		}
	}
}

func describeChain(c []string) string { return strings.Join(c, " → ") }

// findProgram finds what exec would run for name: a path (relative to the
// working directory) or a command looked up in the image's PATH. It
// returns the file and the absolute path exec was given.
func (s *scan) findProgram(name string, final bool) (string, string, lookState) {
	if strings.Contains(name, "/") {
		if !path.IsAbs(name) {
			name = path.Join(s.wdir, name)
		}
		p, st := s.lookup(clean(name), final)
		return p, name, st
	}
	s.watch[name] = true
	for _, d := range s.pathE {
		cand := "/" + path.Join(d, name)
		p, st := s.lookup(path.Join(d, name), final)
		if st != missing {
			// An earlier PATH entry that is not known yet may still hold it.
			return p, cand, st
		}
	}
	return "", "", missing
}

// lookup walks p component by component, following symbolic links, and
// returns the regular file it names. Directories that no layer read so far
// lists are taken to exist (layers rarely list every parent directory).
func (s *scan) lookup(p string, final bool) (string, lookState) {
	comps := strings.Split(p, "/")
	cur := ""
	for hops := 0; len(comps) > 0; {
		c := comps[0]
		comps = comps[1:]
		if c == "" || c == "." {
			continue
		}
		if c == ".." {
			cur = parentDir(cur)
			continue
		}
		s.watch[c] = true
		next := path.Join(cur, c)
		last := len(comps) == 0
		e := s.files[next]
		switch {
		case e == nil:
			if !last {
				cur = next
				continue
			}
			if final {
				return "", missing
			}
			return "", unknown
		case e.kind == kindDeleted:
			return "", missing
		case e.kind == kindDir:
			if last {
				return "", missing
			}
			cur = next
		case e.kind == kindFile:
			if last {
				return next, found
			}
			return "", missing
		case e.kind == kindSymlink || e.kind == kindHardlink:
			if hops++; hops > 40 {
				return "", missing
			}
			t := e.link
			if e.kind == kindHardlink || path.IsAbs(t) {
				cur = ""
			}
			comps = append(strings.Split(t, "/"), comps...)
		}
	}
	return "", missing
}

func parentDir(p string) string {
	d := path.Dir(p)
	if d == "." || d == "/" {
		return ""
	}
	return d
}

// offending lists the binaries of another machine for one program: its
// entrypoint first, then what the scan found in bin directories.
func (s *scan) offending(ep entrypoint) []Binary {
	var out []Binary
	if ep.binary != nil && ep.foreign {
		out = append(out, *ep.binary)
	}
	for _, b := range s.foreign {
		if ep.binary != nil && b.Path == ep.binary.Path {
			continue
		}
		out = append(out, b)
	}
	return out
}
