// Package archaudit checks, before a cluster is created, that every image a
// manifest runs can run on an architecture: Calico v3.1/v3.2 pods crashed on
// arm64 with "exec format error" because their images held x86-64 binaries.
//
// For each image it resolves the reference in a registry, lists the
// platforms of the index (or reads the single image's config), picks
// linux/<arch> and streams that image's layers, top layer first, reading only
// the ELF header of each executable: the entrypoint (or the container's
// command) and the files in bin/, sbin/, usr/bin, usr/sbin, usr/local/bin,
// usr/local/sbin, opt/*/bin and the image's PATH directories.
//
// A finding has one of four kinds:
//
//   - ok: the image has a linux/<arch> variant and none of the executables
//     looked at is built for another machine.
//   - no-variant: the index has no linux/<arch> entry, or the image is a
//     single-platform image of another arch. A node of <arch> cannot pull it
//     (index) or pulls it and fails with "exec format error" (single image).
//     The finding names the entrypoint binary of the image (or of the
//     index's first Linux entry) and its machine.
//     Upstream: calico 5963 (tag pushed without its manifest list), 5168;
//     the same tag on two registries, multi-arch on one and amd64-only on the
//     other (calico 4227, 4692), shows as ok for one reference and no-variant
//     for the other.
//   - mislabeled: the linux/<arch> variant exists but its entrypoint, or
//     another executable in a bin directory, is an ELF of another machine
//     (calico 4256: an "arm64" image holding an amd64 binary). The finding
//     names the binaries and their machine.
//   - error: the image could not be checked (registry unreachable, 401/500,
//     unknown tag, unreadable layer). An error is never ok.
package archaudit

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/cnimatrix/cnimatrix/internal/images"
	"github.com/cnimatrix/cnimatrix/internal/logx"
)

// ImageRef is one image as a workload uses it.
type ImageRef struct {
	Ref           string `json:"image"`
	Container     string `json:"container,omitempty"`
	InitContainer bool   `json:"initContainer,omitempty"`
	// Workload names the object that runs the container, as in
	// "DaemonSet kube-system/calico-node".
	Workload string `json:"workload,omitempty"`
	// Command is the container's command, which replaces the image's
	// entrypoint: its first element is the program that must run.
	Command []string `json:"command,omitempty"`
}

// Kind is the verdict of a finding.
type Kind string

// Finding kinds; see the package comment.
const (
	OK         Kind = "ok"
	NoVariant  Kind = "no-variant"
	Mislabeled Kind = "mislabeled"
	Error      Kind = "error"
)

// Binary is one executable of an image.
type Binary struct {
	Path    string `json:"path"`
	Machine string `json:"machine"`
	// Via is how the container reaches Path, when not by that name: the
	// command looked up in PATH, symbolic links, scripts and their "#!".
	Via string `json:"via,omitempty"`
}

func (b Binary) String() string { return b.Path + " (" + b.Machine + ")" }

// route is how the container reaches the binary: "start_runit →
// /usr/sbin/start_runit (#!/bin/bash) → /bin/bash → /usr/bin/bash".
func (b Binary) route() string {
	if b.Via == "" {
		return b.Path
	}
	return b.Via + " → " + b.Path
}

// Finding is the verdict on one image of one container.
type Finding struct {
	Image         string `json:"image"`
	Workload      string `json:"workload,omitempty"`
	Container     string `json:"container,omitempty"`
	InitContainer bool   `json:"initContainer,omitempty"`
	Kind          Kind   `json:"kind"`
	// Reason is one line for a person.
	Reason string `json:"reason"`
	// Fetched is the reference actually fetched, when a mirror rewrote it.
	Fetched string `json:"fetched,omitempty"`
	// Digest is the digest of what the reference resolved to (index or image).
	Digest string `json:"digest,omitempty"`
	// Platforms are those of the index ("linux/amd64", "linux/arm64/v8"), or
	// the single image's own.
	Platforms []string `json:"platforms,omitempty"`
	// Variant is the digest of the linux/<arch> image that was scanned.
	Variant string `json:"variant,omitempty"`
	// Entrypoint is the program the container runs, resolved through PATH,
	// symbolic links and "#!" lines, when it was found.
	Entrypoint *Binary `json:"entrypoint,omitempty"`
	// Offending are executables built for another machine than the arch:
	// the entrypoint first, then at most 20 of the others.
	Offending []Binary `json:"offending,omitempty"`
	// Scanned counts the ELF executables whose header was read; Foreign
	// how many of them are of another machine.
	Scanned int     `json:"scanned"`
	Foreign int     `json:"foreign,omitempty"`
	Seconds float64 `json:"seconds"`
}

// Report is the result of an audit, in the order of the images given.
type Report struct {
	Arch     string    `json:"arch"`
	Findings []Finding `json:"findings"`
}

// OK reports whether every finding is ok.
func (r *Report) OK() bool {
	for _, f := range r.Findings {
		if f.Kind != OK {
			return false
		}
	}
	return true
}

// Count returns how many findings have kind k.
func (r *Report) Count(k Kind) int {
	n := 0
	for _, f := range r.Findings {
		if f.Kind == k {
			n++
		}
	}
	return n
}

// Options tune an audit. The zero value audits against the real registries.
type Options struct {
	// Mirrors maps an upstream registry host ("docker.io", "quay.io") to the
	// base URL that serves its repositories: with
	// "docker.io" -> "http://127.0.0.1:5000/docker.io", docker.io/calico/node:v3.2
	// is fetched as 127.0.0.1:5000/docker.io/calico/node:v3.2. The key "*"
	// applies to every upstream not named and appends the upstream's
	// directory, the layout of the harness's own registry
	// (images.Registry): "*" -> "http://127.0.0.1:5000".
	Mirrors map[string]string
	// Insecure allows plain HTTP to any registry and skips TLS verification.
	// A mirror given with an http:// URL is reached over HTTP regardless.
	Insecure bool
	Log      *logx.Logger
	// MaxExecutables caps the ELF headers read per image (default 200): once
	// the entrypoint is known and that many executables agree, the rest of
	// the image is not read.
	MaxExecutables int
	// Parallel is how many images are checked at once (default 2).
	Parallel int
	// ImageTimeout bounds the work on one image (default 3 minutes).
	ImageTimeout time.Duration
}

// InputError is an error in what the caller asked for (an unparsable image
// reference, an unknown arch, a bad mirror), as opposed to a registry that
// could not be reached, which is an error finding.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

func inputErr(format string, args ...any) error {
	return &InputError{fmt.Errorf(format, args...)}
}

// Audit checks every image for linux/arch and returns one finding per
// element of images, in order. It returns an *InputError for a bad
// reference, arch or mirror, before contacting any registry; registry
// failures are findings of kind Error, not errors. When ctx ends, the report
// so far is returned with ctx's error.
func Audit(ctx context.Context, imgs []ImageRef, arch string, opts Options) (*Report, error) {
	want, ok := archMachines[arch]
	if !ok {
		return nil, inputErr("unknown arch %q (known: %s)", arch, strings.Join(KnownArches(), ", "))
	}
	if opts.Log == nil {
		opts.Log = logx.Discard()
	}
	if opts.MaxExecutables <= 0 {
		opts.MaxExecutables = 200
	}
	if opts.Parallel <= 0 {
		opts.Parallel = 2
	}
	if opts.ImageTimeout <= 0 {
		opts.ImageTimeout = 3 * time.Minute
	}
	mirrors, err := parseMirrors(opts.Mirrors)
	if err != nil {
		return nil, err
	}

	// One job per distinct reference: the calico cni image runs as
	// install-cni and as upgrade-ipam, and its layers are read once for both.
	type job struct {
		ref     name.Reference
		fetch   name.Reference
		progs   []string           // container commands; "" is the image's own entrypoint
		results map[string]Finding // by program
	}
	jobs := map[string]*job{}
	var order []*job
	for i, im := range imgs {
		if strings.TrimSpace(im.Ref) == "" {
			return nil, inputErr("image %d (%s): empty image reference", i+1, where(im))
		}
		ref, err := name.ParseReference(im.Ref)
		if err != nil {
			return nil, inputErr("image %q (%s): not a valid image reference: %w", im.Ref, where(im), err)
		}
		j := jobs[ref.Name()]
		if j == nil {
			fetch, err := mirrors.rewrite(ref, opts.Insecure)
			if err != nil {
				return nil, inputErr("image %q: %w", im.Ref, err)
			}
			j = &job{ref: ref, fetch: fetch}
			jobs[ref.Name()] = j
			order = append(order, j)
		}
		if p := program(im); !slices.Contains(j.progs, p) {
			j.progs = append(j.progs, p)
		}
	}

	tr := newTransport(opts.Insecure)
	defer tr.CloseIdleConnections()
	a := &auditor{want: want, arch: arch, opts: opts, transport: tr}
	sem := make(chan struct{}, opts.Parallel)
	var wg sync.WaitGroup
	for _, j := range order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				j.results = errorResults(j.progs, fmt.Errorf("not checked: %w", ctx.Err()))
				return
			}
			defer func() { <-sem }()
			ictx, cancel := context.WithTimeout(ctx, opts.ImageTimeout)
			defer cancel()
			j.results = a.check(ictx, j.fetch, j.progs)
			for p, f := range j.results {
				opts.Log.Debugf("archaudit %s %s: %s in %.1fs: %s", j.fetch.Name(), p, f.Kind, f.Seconds, f.Reason)
			}
		}()
	}
	wg.Wait()

	rep := &Report{Arch: arch, Findings: make([]Finding, 0, len(imgs))}
	for _, im := range imgs {
		ref, _ := name.ParseReference(im.Ref)
		j := jobs[ref.Name()]
		f := j.results[program(im)]
		f.Image = im.Ref
		f.Workload = im.Workload
		f.Container = im.Container
		f.InitContainer = im.InitContainer
		if j.fetch.Name() != j.ref.Name() {
			f.Fetched = j.fetch.Name()
		}
		rep.Findings = append(rep.Findings, f)
	}
	return rep, ctx.Err()
}

// KnownArches lists the arch names Audit accepts (Go's GOARCH spelling).
func KnownArches() []string {
	var out []string
	for a := range archMachines {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

func where(im ImageRef) string {
	var parts []string
	if im.Workload != "" {
		parts = append(parts, im.Workload)
	}
	if im.Container != "" {
		c := "container " + im.Container
		if im.InitContainer {
			c = "init container " + im.Container
		}
		parts = append(parts, c)
	}
	if len(parts) == 0 {
		return "no workload"
	}
	return strings.Join(parts, ", ")
}

func program(im ImageRef) string {
	if len(im.Command) > 0 {
		return im.Command[0]
	}
	return ""
}

// errorResults is the same error finding for every program of an image.
// Findings by program leave the fields of the container to Audit.
func errorResults(progs []string, err error) map[string]Finding {
	return sameForAll(progs, Finding{Kind: Error, Reason: err.Error()})
}

type auditor struct {
	want      machine
	arch      string
	opts      Options
	transport http.RoundTripper
}

func newTransport(insecure bool) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if insecure {
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the user asked for --insecure
	}
	return t
}

// check resolves fetch and returns one finding per program.
func (a *auditor) check(ctx context.Context, fetch name.Reference, progs []string) map[string]Finding {
	t0 := time.Now()
	out := a.check1(ctx, fetch, progs)
	secs := time.Since(t0).Seconds()
	for p, f := range out {
		f.Seconds = secs
		out[p] = f
	}
	return out
}

func (a *auditor) remoteOpts(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(a.transport),
		// The audit reads what anyone may pull; it never looks for credentials.
		remote.WithAuth(authn.Anonymous),
		remote.WithUserAgent("cnimatrix-archaudit"),
		// A registry that answers 500 is an error finding in seconds, not after
		// the default 1 s + 3 s + 9 s of retries.
		remote.WithRetryBackoff(remote.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 2}),
	}
}

func (a *auditor) check1(ctx context.Context, fetch name.Reference, progs []string) map[string]Finding {
	fail := func(format string, args ...any) map[string]Finding {
		return errorResults(progs, fmt.Errorf(format, args...))
	}
	ropts := a.remoteOpts(ctx)
	desc, err := remote.Get(fetch, ropts...)
	if err != nil {
		return fail("resolve %s: %s", fetch.Name(), describeErr(err))
	}
	base := Finding{Digest: desc.Digest.String()}
	var img v1.Image
	var subject string // what the verdict is about: "index entry linux/arm64/v8", "image linux/arm64"
	isIndex := desc.MediaType.IsIndex()
	switch {
	case isIndex:
		idx, err := desc.ImageIndex()
		if err != nil {
			return fail("read index %s: %s", fetch.Name(), describeErr(err))
		}
		platforms, variant, claimed, err := a.pick(idx, 0)
		if err != nil {
			return fail("read index %s: %s", fetch.Name(), describeErr(err))
		}
		base.Platforms = platforms
		if variant == nil {
			base.Kind = NoVariant
			base.Reason = fmt.Sprintf("index has no linux/%s entry (platforms: %s)", a.arch, orNone(platforms))
			return a.nameOtherEntrypoint(ctx, idx, progs, base)
		}
		img, subject = variant, "index entry "+claimed
	case desc.MediaType.IsImage():
		img, err = desc.Image()
		if err != nil {
			return fail("read image %s: %s", fetch.Name(), describeErr(err))
		}
	default:
		return fail("resolve %s: unsupported manifest media type %q", fetch.Name(), desc.MediaType)
	}

	cfg, err := img.ConfigFile()
	if err != nil {
		return fail("read image config of %s: %s", fetch.Name(), describeErr(err))
	}
	if dg, err := img.Digest(); err == nil {
		base.Variant = dg.String()
	}
	own := platformString(cfg.OS, cfg.Architecture, cfg.Variant)
	// A single-platform image of another arch is pulled by any node and
	// fails to exec there: the scan only names the entrypoint's binary.
	wrongArch := !isIndex && (cfg.OS != "linux" || cfg.Architecture != a.arch)
	if isIndex {
		if cfg.Architecture != a.arch || (cfg.OS != "" && cfg.OS != "linux") {
			subject += " (its config says " + own + ")"
		}
	} else {
		base.Platforms = []string{own}
		subject = "image " + own
	}
	sc, err := scanImage(ctx, img, cfg, progs, a.want, a.opts.MaxExecutables, wrongArch)
	if err != nil {
		return fail("scan %s (%s): %s", fetch.Name(), own, describeErr(err))
	}
	out := map[string]Finding{}
	for _, p := range progs {
		f := base
		f.Scanned, f.Foreign = sc.scanned, sc.foreignCount
		ep := sc.entrypoints[p]
		if ep.binary != nil {
			b := *ep.binary
			f.Entrypoint = &b
		}
		if wrongArch {
			f.Kind = NoVariant
			f.Reason = fmt.Sprintf("single-platform image for %s, no linux/%s", own, a.arch)
			switch {
			case ep.binary != nil:
				f.Reason += "; entrypoint " + ep.binary.route() + " is " + ep.binary.Machine
				if ep.foreign {
					f.Offending = []Binary{*ep.binary}
				}
			case ep.note != "":
				f.Reason += " (" + ep.note + ")"
			}
		} else {
			f.Offending = sc.offending(ep)
			f.Kind, f.Reason = a.judge(sc, ep, f.Offending, subject)
		}
		out[p] = f
	}
	return out
}

// nameOtherEntrypoint completes the findings on an index without the arch:
// the entrypoint of its first Linux entry names the binary a person would
// have to rebuild (as "file" on a copied-out binary did in the seed). Only
// enough of that image is read to find its entrypoint.
func (a *auditor) nameOtherEntrypoint(ctx context.Context, idx v1.ImageIndex, progs []string, base Finding) map[string]Finding {
	im, err := idx.IndexManifest()
	if err != nil {
		return sameForAll(progs, base)
	}
	for _, d := range im.Manifests {
		p := d.Platform
		if !d.MediaType.IsImage() || p == nil || p.OS != "linux" || p.Architecture == "unknown" {
			continue
		}
		plat := platformString(p.OS, p.Architecture, p.Variant)
		img, err := idx.Image(d.Digest)
		if err != nil {
			return sameForAll(progs, base)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			return sameForAll(progs, base)
		}
		sc, err := scanImage(ctx, img, cfg, progs, a.want, a.opts.MaxExecutables, true)
		if err != nil {
			base.Reason += fmt.Sprintf("; the %s entry could not be read: %s", plat, describeErr(err))
			return sameForAll(progs, base)
		}
		out := map[string]Finding{}
		for _, prog := range progs {
			f := base
			if ep := sc.entrypoints[prog]; ep.binary != nil {
				b := *ep.binary
				f.Entrypoint = &b
				f.Reason += fmt.Sprintf("; its %s entrypoint %s is %s", plat, b.route(), b.Machine)
				if ep.foreign {
					f.Offending = []Binary{b}
				}
			}
			out[prog] = f
		}
		return out
	}
	return sameForAll(progs, base)
}

// judge turns what a scan saw into a kind and a reason.
func (a *auditor) judge(sc *scan, ep entrypoint, offending []Binary, subject string) (Kind, string) {
	note := ""
	if ep.note != "" {
		note = " (" + ep.note + ")"
	}
	others := sc.foreignCount
	if ep.binary != nil && ep.foreign && sc.isCounted(ep.binary.Path) {
		others--
	}
	var rest []Binary
	for _, b := range offending {
		if ep.binary == nil || b.Path != ep.binary.Path {
			rest = append(rest, b)
		}
	}
	switch {
	case ep.binary != nil && ep.foreign:
		r := fmt.Sprintf("%s: entrypoint %s is %s, not %s", subject, ep.binary.route(), ep.binary.Machine, a.want.name)
		if others > 0 {
			r += fmt.Sprintf("; %d other executables are not %s either: %s", others, a.want.name, binList(rest, others))
		}
		return Mislabeled, r
	case others > 0 && ep.binary != nil:
		return Mislabeled, fmt.Sprintf("%s: entrypoint %s is %s, but %d of %d executables checked are not: %s",
			subject, ep.binary.route(), ep.binary.Machine, others, sc.scanned, binList(rest, others))
	case others > 0:
		return Mislabeled, fmt.Sprintf("%s: %d of %d executables checked are not %s: %s%s",
			subject, others, sc.scanned, a.want.name, binList(rest, others), note)
	case ep.binary != nil:
		return OK, fmt.Sprintf("%s: entrypoint %s is %s; %d executables checked", subject, ep.binary.route(), ep.binary.Machine, sc.scanned)
	case sc.scanned > 0:
		return OK, fmt.Sprintf("%s: %d executables checked, all %s%s", subject, sc.scanned, a.want.name, note)
	}
	if note == "" {
		note = " (no ELF executable found to check)"
	} else {
		note = note[:len(note)-1] + "; no ELF executable found to check)"
	}
	return OK, subject + " present" + note
}

// binList names the first few of bs; total is how many there are in all.
func binList(bs []Binary, total int) string {
	const show = 3
	var parts []string
	for i, b := range bs {
		if i == show {
			break
		}
		parts = append(parts, b.String())
	}
	if total > len(parts) {
		parts = append(parts, fmt.Sprintf("and %d more", total-len(parts)))
	}
	return strings.Join(parts, ", ")
}

func sameForAll(progs []string, f Finding) map[string]Finding {
	out := map[string]Finding{}
	for _, p := range progs {
		out[p] = f
	}
	return out
}

func orNone(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	return strings.Join(xs, ", ")
}

// pick lists the platforms of idx and returns the linux/<arch> image and
// the platform the index claims for it; nil when there is none. Nested
// indexes are followed one level deep.
func (a *auditor) pick(idx v1.ImageIndex, depth int) ([]string, v1.Image, string, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, nil, "", err
	}
	var platforms []string
	var found v1.Image
	var claimed string
	for _, d := range im.Manifests {
		switch {
		case d.MediaType.IsIndex() && depth == 0:
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, nil, "", err
			}
			ps, img, c, err := a.pick(child, depth+1)
			if err != nil {
				return nil, nil, "", err
			}
			platforms = append(platforms, ps...)
			if found == nil {
				found, claimed = img, c
			}
		case d.MediaType.IsImage():
			if d.Platform == nil {
				continue
			}
			p := d.Platform
			// Build attestations are listed as unknown/unknown; they are not
			// something a node runs.
			if p.OS == "unknown" || p.Architecture == "unknown" {
				continue
			}
			ps := platformString(p.OS, p.Architecture, p.Variant)
			platforms = append(platforms, ps)
			if found == nil && p.OS == "linux" && p.Architecture == a.arch {
				img, err := idx.Image(d.Digest)
				if err != nil {
					return nil, nil, "", err
				}
				found, claimed = img, ps
			}
		}
	}
	return platforms, found, claimed, nil
}

func platformString(os, arch, variant string) string {
	s := os + "/" + arch
	if variant != "" {
		s += "/" + variant
	}
	return s
}

// describeErr shortens registry errors to what a person acts on.
func describeErr(err error) string {
	var te *transport.Error
	if errors.As(err, &te) {
		msg := fmt.Sprintf("registry answered %d %s", te.StatusCode, http.StatusText(te.StatusCode))
		if len(te.Errors) > 0 {
			msg += ": " + te.Errors[0].String()
		}
		return msg
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timed out: " + err.Error()
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return "cannot resolve registry host: " + dnsErr.Error()
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return "cannot reach registry: " + opErr.Error()
	}
	return err.Error()
}

// mirrorSet rewrites upstream references to mirrors.
type mirrorSet struct {
	byHost   map[string]*url.URL
	wildcard *url.URL
}

func parseMirrors(m map[string]string) (*mirrorSet, error) {
	ms := &mirrorSet{byHost: map[string]*url.URL{}}
	for up, base := range m {
		u, err := url.Parse(base)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, inputErr("mirror for %q: %q is not an http:// or https:// URL", up, base)
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return nil, inputErr("mirror for %q: %q has a query or fragment", up, base)
		}
		if up == "*" {
			ms.wildcard = u
			continue
		}
		host := normalizeHost(up)
		if host == "" || strings.ContainsAny(host, "/ ") {
			return nil, inputErr("mirror: %q is not a registry host (as in docker.io, quay.io)", up)
		}
		ms.byHost[host] = u
	}
	return ms, nil
}

func normalizeHost(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	switch h {
	case name.DefaultRegistry, "registry-1.docker.io":
		return "docker.io"
	}
	return h
}

// rewrite returns the reference to fetch for ref.
func (ms *mirrorSet) rewrite(ref name.Reference, insecure bool) (name.Reference, error) {
	var nopts []name.Option
	if insecure {
		nopts = append(nopts, name.Insecure)
	}
	up := normalizeHost(ref.Context().RegistryStr())
	u, path := ms.byHost[up], ""
	if u != nil {
		path = strings.Trim(u.Path, "/")
	} else if ms.wildcard != nil {
		u = ms.wildcard
		path = strings.Trim(strings.Trim(u.Path, "/")+"/"+images.MirrorPath(up), "/")
	}
	if u == nil {
		if insecure {
			return name.ParseReference(ref.Name(), nopts...)
		}
		return ref, nil
	}
	if u.Scheme == "http" && !insecure {
		nopts = append(nopts, name.Insecure)
	}
	repo := ref.Context().RepositoryStr()
	if path != "" {
		repo = path + "/" + repo
	}
	r, err := name.NewRepository(u.Host+"/"+repo, nopts...)
	if err != nil {
		return nil, fmt.Errorf("mirror %s: %w", u, err)
	}
	switch t := ref.(type) {
	case name.Digest:
		return r.Digest(t.DigestStr()), nil
	case name.Tag:
		return r.Tag(t.TagStr()), nil
	}
	return nil, fmt.Errorf("reference %s: neither a tag nor a digest", ref)
}
