package matrix

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Expectations are known failures: a cell they select whose outcome (and root
// cause, when given) is the expected one is "expected-fail" in a diff rather
// than a regression. Each one must say why, so a known failure never hides
// silently; a link to the issue that tracks it is strongly encouraged.
type Expectations struct {
	Path    string
	Entries []*Expectation
	// Warnings are problems that do not stop the file from being used, each
	// prefixed with file:line (an entry without a link).
	Warnings []string
}

// Expectation is one entry of an expectations file. Selectors are globs in
// the syntax of path.Match; an empty selector matches anything. An entry
// selects cells either by Cell (a glob over the cell ID) or by the match
// fields, never both.
type Expectation struct {
	Line int

	Cell       string
	CNI        string
	CNIVersion string
	Kubernetes string
	Arch       string
	Provider   string
	Variant    string

	// Outcome is the outcome the selected cells are known to have (default fail).
	Outcome Outcome
	// RootCause, when set, must equal the cell's root cause: a known bug
	// should not excuse a cell that now fails for another reason.
	RootCause string
	Reason    string
	Link      string
}

// Selects reports whether the entry's selectors match the cell.
func (e *Expectation) Selects(c Cell) bool {
	if e.Cell != "" {
		return glob(e.Cell, c.ID())
	}
	return glob(e.CNI, c.CNI) && glob(e.CNIVersion, c.CNIVersion) && glob(e.Kubernetes, c.Kubernetes) &&
		glob(e.Arch, c.Arch) && glob(e.Provider, c.Provider) && glob(e.Variant, c.Variant)
}

// Accepts reports whether r has the outcome (and root cause) the entry expects.
func (e *Expectation) Accepts(r Result) bool {
	return r.Outcome == e.Outcome && (e.RootCause == "" || e.RootCause == r.RootCause)
}

// Want describes what the entry expects, for messages.
func (e *Expectation) Want() string {
	if e.RootCause != "" {
		return fmt.Sprintf("%s (rootCause %s)", e.Outcome, e.RootCause)
	}
	return string(e.Outcome)
}

// Where is file:line of the entry.
func (e *Expectation) Where(file string) string { return fmt.Sprintf("%s:%d", file, e.Line) }

// Selector is the entry's selectors in one line, for messages.
func (e *Expectation) Selector() string {
	if e.Cell != "" {
		return "cell=" + e.Cell
	}
	var s []string
	for _, f := range []struct{ k, v string }{{"cni", e.CNI}, {"cniVersion", e.CNIVersion}, {"kubernetes", e.Kubernetes}, {"arch", e.Arch}, {"provider", e.Provider}, {"variant", e.Variant}} {
		if f.v != "" {
			s = append(s, f.k+"="+f.v)
		}
	}
	return strings.Join(s, " ")
}

// For returns the first entry, in file order, that selects the cell.
func (x *Expectations) For(c Cell) *Expectation {
	if x == nil {
		return nil
	}
	for _, e := range x.Entries {
		if e.Selects(c) {
			return e
		}
	}
	return nil
}

func glob(pattern, s string) bool {
	if pattern == "" {
		return true
	}
	ok, err := path.Match(pattern, s)
	return err == nil && ok
}

// LineError is a problem at a line of a file (line 0: the whole file).
type LineError struct {
	File string
	Line int
	Msg  string
}

func (e *LineError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// LineErrors is every problem found in one file.
type LineErrors []*LineError

func (es LineErrors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// LoadExpectations reads and validates an expectations file.
func LoadExpectations(file string) (*Expectations, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read expectations: %w", err)
	}
	return ParseExpectations(file, data)
}

var expectationFields = []string{"cell", "cni", "cniVersion", "kubernetes", "arch", "provider", "variant", "outcome", "rootCause", "reason", "link"}

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// ParseExpectations parses and validates expectations data; file is used in
// messages. The format:
//
//	expectations:
//	  - cni: calico              # match fields are globs (path.Match)
//	    cniVersion: v3.20.*
//	    arch: arm64
//	    outcome: fail            # default fail; also infra-error, skipped, unknown
//	    rootCause: arch-mismatch    # optional: the cell's rootCause must be this
//	    reason: calico/upgrade-ipam v3.20.5 has no arm64 image   # required
//	    link: https://github.com/projectcalico/calico/issues/5963 # encouraged
//	  - cell: flannel-v0.28.10_k8s-v1.37.2_arm64_qemu   # or a cell ID (glob)
//	    reason: ...
//
// The file is walked as YAML nodes rather than decoded into structs so that
// every error, unknown fields included, carries the line it is about.
func ParseExpectations(file string, data []byte) (*Expectations, error) {
	x := &Expectations{Path: file}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return x, nil // only comments: no known failures
		}
		return nil, LineErrors{yamlError(file, err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, LineErrors{{File: file, Line: extra.Line, Msg: "an expectations file holds one YAML document; found a second one"}}
	}
	var errs LineErrors
	add := func(line int, format string, args ...any) {
		errs = append(errs, &LineError{File: file, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return x, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, LineErrors{{File: file, Line: root.Line, Msg: fmt.Sprintf("want a mapping with an expectations: list, not a %s", nodeKind(root))}}
	}
	var list *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Value != "expectations" {
			add(k.Line, "unknown field %q (known: expectations)", k.Value)
			continue
		}
		list = v
	}
	switch {
	case list == nil && len(errs) == 0:
		add(root.Line, "expectations: list is missing (write expectations: [] for none)")
	case list == nil:
	case list.Kind == yaml.ScalarNode && list.Tag == "!!null":
	case list.Kind != yaml.SequenceNode:
		add(list.Line, "expectations: want a list, not a %s", nodeKind(list))
	default:
		for _, n := range list.Content {
			e, entryErrs := parseEntry(file, n, &x.Warnings)
			errs = append(errs, entryErrs...)
			if e != nil {
				x.Entries = append(x.Entries, e)
			}
		}
	}
	if len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
		return nil, errs
	}
	return x, nil
}

func parseEntry(file string, n *yaml.Node, warnings *[]string) (*Expectation, LineErrors) {
	var errs LineErrors
	add := func(line int, format string, args ...any) {
		errs = append(errs, &LineError{File: file, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	if n.Kind != yaml.MappingNode {
		add(n.Line, "expectation: want a mapping (cell or match fields, outcome, reason, link), not a %s", nodeKind(n))
		return nil, errs
	}
	e := &Expectation{Line: n.Line, Outcome: Fail}
	fields := map[string]*string{
		"cell": &e.Cell, "cni": &e.CNI, "cniVersion": &e.CNIVersion, "kubernetes": &e.Kubernetes,
		"arch": &e.Arch, "provider": &e.Provider, "variant": &e.Variant,
		"rootCause": &e.RootCause, "reason": &e.Reason, "link": &e.Link,
	}
	lines := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if prev, dup := lines[k.Value]; dup {
			add(k.Line, "%s is already set at line %d", k.Value, prev)
			continue
		}
		lines[k.Value] = k.Line
		if !slices.Contains(expectationFields, k.Value) {
			if hint := fieldHint(k.Value); hint != "" {
				add(k.Line, "unknown field %q (did you mean %q?)", k.Value, hint)
			} else {
				add(k.Line, "unknown field %q (known: %s)", k.Value, strings.Join(expectationFields, ", "))
			}
			continue
		}
		if v.Kind != yaml.ScalarNode {
			add(v.Line, "%s: want a single value, not a %s", k.Value, nodeKind(v))
			continue
		}
		val := strings.TrimSpace(v.Value)
		if v.Tag == "!!null" {
			val = ""
		}
		if k.Value == "outcome" {
			if val != "" {
				e.Outcome = Outcome(val)
			}
			continue
		}
		*fields[k.Value] = val
	}

	selectors := []string{"cni", "cniVersion", "kubernetes", "arch", "provider", "variant"}
	var matchSet []string
	for _, s := range selectors {
		if *fields[s] != "" {
			matchSet = append(matchSet, s)
		}
	}
	switch {
	case e.Cell != "" && len(matchSet) > 0:
		add(lines["cell"], "give either cell or match fields (%s), not both", strings.Join(matchSet, ", "))
	case e.Cell == "" && len(matchSet) == 0:
		add(n.Line, "expectation selects no cell: give cell (a cell ID) or at least one of %s", strings.Join(selectors, ", "))
	}
	for _, s := range append([]string{"cell"}, selectors...) {
		if p := *fields[s]; p != "" {
			if _, err := path.Match(p, ""); err != nil {
				add(lines[s], "%s %q: not a valid glob (%v)", s, p, err)
			}
		}
	}
	switch e.Outcome {
	case Fail, InfraError, Skipped, Unknown:
	case Pass:
		add(lines["outcome"], "outcome pass: an expectation records a known failure; a passing cell needs no entry")
	default:
		add(lines["outcome"], "outcome %q: want fail, infra-error, skipped or unknown", e.Outcome)
	}
	if e.Reason == "" {
		line := lines["reason"]
		if line == 0 {
			line = n.Line
		}
		add(line, "reason is required: say why this cell is known to fail, so the expectation can be reviewed and removed")
	}
	if e.Link == "" {
		*warnings = append(*warnings, fmt.Sprintf("%s:%d: no link: point to the issue that tracks this failure", file, n.Line))
	} else if u, err := url.Parse(e.Link); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		add(lines["link"], "link %q: want an http(s) URL, e.g. https://github.com/projectcalico/calico/issues/5963", e.Link)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return e, nil
}

// fieldHint names the field a misspelt one most likely meant, or "".
func fieldHint(f string) string {
	for _, k := range expectationFields {
		if strings.EqualFold(k, f) {
			return k
		}
	}
	switch strings.ToLower(f) {
	case "k8s", "kube", "kubernetesversion", "k8sversion":
		return "kubernetes"
	case "version", "cni_version", "cni-version":
		return "cniVersion"
	case "id", "cellid", "cell_id":
		return "cell"
	case "root_cause", "root-cause", "cause":
		return "rootCause"
	case "url", "issue":
		return "link"
	case "why", "comment":
		return "reason"
	}
	return ""
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.AliasNode:
		return "alias"
	}
	return "value"
}

func yamlError(file string, err error) *LineError {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		var line int
		fmt.Sscanf(m[1], "%d", &line)
		return &LineError{File: file, Line: line, Msg: m[2]}
	}
	return &LineError{File: file, Msg: strings.TrimPrefix(msg, "yaml: ")}
}
