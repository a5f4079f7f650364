// Package scenario reads a scenario file (which CNI versions x Kubernetes
// versions x architectures x provider to run) and expands it into matrix
// cells. Every error names the file and line it is about.
package scenario

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cnimatrix/cnimatrix/internal/apicompat"
	"github.com/cnimatrix/cnimatrix/internal/catalog"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

// Scenario is a validated scenario file.
type Scenario struct {
	Path        string
	Name        string
	Description string
	CNI         CNISpec
	Kubernetes  []string
	Arch        []string
	Provider    string // kind | qemu | auto | existing
	// Existing is the cluster a provider-existing scenario runs on.
	Existing   *Existing
	Nodes      int
	PodSubnet  string
	ServiceSub string
	Timeouts   Timeouts
	Checks     ChecksSpec
	Variant    string
	// Expect is the outcome the scenario's cells should have (default pass);
	// harness self-tests use it for cells built to fail. ExpectFor applies
	// the per-cell rules of CellExpects over it.
	Expect Expectation
	// CellExpects are expect.cells: expectations for the cells they match,
	// the first match winning, for scenarios whose cells differ on purpose
	// (fixtures that pass on one arch and fail on the other).
	CellExpects []CellExpect
	// Upgrade, when set, makes every cell an upgrade-path cell: install the
	// cell's version, check, upgrade in place to Upgrade.To, check again.
	Upgrade *Upgrade
	// Soak, when Duration > 0, probes nginx across nodes for that long
	// after each cell's checks passed (cnimatrix run --soak overrides it).
	Soak Soak
	// ReuseClusters runs the cells that need the same cluster one after
	// another on one cluster, uninstalling the CNI in between (cnimatrix
	// run --reuse-clusters sets it for every scenario).
	ReuseClusters bool
	// skips: the cells that cannot run, by skipKey (SkipFor).
	skips map[string]*Skip
}

// Skip is why a cell cannot run, and what can be looked at without it.
type Skip struct {
	// Reason is catalog.CNIVersion.SkipReason's: "calico v3.1.7 cannot run
	// on Kubernetes v1.37.2: its manifest uses ...".
	Reason string
	// Removed are the APIs of the version's manifest that the cell's
	// Kubernetes no longer serves.
	Removed []apicompat.Removal
	// Images are the catalog's images of the version, to audit for the
	// cell's arch though the cell does not run.
	Images []string
}

func skipKey(version, k8s string) string { return version + "\x00" + k8s }

// SkipFor says why cell c cannot run, nil when it can: the catalog says
// its version's manifest uses an API its Kubernetes no longer serves. Such
// a cell is skipped with the reason and needs no cluster; a version whose
// every cell is skipped needs no manifest either.
func (s *Scenario) SkipFor(c matrix.Cell) *Skip { return s.skips[skipKey(c.CNIVersion, c.Kubernetes)] }

// ManifestPaths is every manifest the scenario's cells may apply: the
// versions' and the upgrade's, without repeats.
func (s *Scenario) ManifestPaths() []string {
	var out []string
	for _, v := range s.CNI.Versions {
		if p := s.CNI.Manifests[v]; p != "" && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	if s.Upgrade != nil && !slices.Contains(out, s.Upgrade.Manifest) {
		out = append(out, s.Upgrade.Manifest)
	}
	return out
}

// Error is a scenario error at a file and line; the same type as the
// matrix's expectations files report.
type Error = matrix.LineError

// Errors is every problem found in one file.
type Errors = matrix.LineErrors

// str is a scalar with its line.
type str struct {
	V    string
	Line int
}

func (s *str) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: want a single value, not a %s", n.Line, kindName(n.Kind))}}
	}
	s.V, s.Line = n.Value, n.Line
	return nil
}

// strs accepts a scalar or a list of scalars.
type strs []str

func (ss *strs) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*ss = strs{{n.Value, n.Line}}
		return nil
	case yaml.SequenceNode:
		var out strs
		for _, c := range n.Content {
			var s str
			if err := s.UnmarshalYAML(c); err != nil {
				return err
			}
			out = append(out, s)
		}
		*ss = out
		return nil
	}
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: want a value or a list of values, not a %s", n.Line, kindName(n.Kind))}}
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.AliasNode:
		return "alias"
	}
	return "value"
}

type rawScenario struct {
	Name        str `yaml:"name"`
	Description str `yaml:"description"`
	CNI         struct {
		Name     str  `yaml:"name"`
		Versions strs `yaml:"versions"`
		Manifest str  `yaml:"manifest"`
		// Manifests: version -> manifest file, for versions that are
		// fixtures of the scenario rather than catalog versions.
		Manifests map[string]str `yaml:"manifests"`
		Namespace str            `yaml:"namespace"`
		Selector  str            `yaml:"selector"`
		// ImageOverrides: image -> replacement.
		ImageOverrides map[string]str `yaml:"imageOverrides"`
		// Calico: options of a calico.yaml install.
		Calico *rawCalico `yaml:"calico"`
	} `yaml:"cni"`
	Kubernetes strs `yaml:"kubernetes"`
	Arch       strs `yaml:"arch"`
	Provider   str  `yaml:"provider"`
	Existing   *struct {
		Kubeconfig str `yaml:"kubeconfig"`
		Context    str `yaml:"context"`
		Mode       str `yaml:"mode"`
	} `yaml:"existing"`
	Nodes         str `yaml:"nodes"`
	PodSubnet     str `yaml:"podSubnet"`
	ServiceSubnet str `yaml:"serviceSubnet"`
	Timeouts      struct {
		Cluster  str `yaml:"cluster"`
		CNIReady str `yaml:"cniReady"`
		Checks   str `yaml:"checks"`
	} `yaml:"timeouts"`
	Checks struct {
		ServiceTargetPort str `yaml:"serviceTargetPort"`
	} `yaml:"checks"`
	Variant       str `yaml:"variant"`
	ReuseClusters str `yaml:"reuseClusters"`
	Upgrade       *struct {
		To              str `yaml:"to"`
		ProbeInterval   str `yaml:"probeInterval"`
		MaxFailedProbes str `yaml:"maxFailedProbes"`
	} `yaml:"upgrade"`
	Soak *struct {
		Duration        str `yaml:"duration"`
		Interval        str `yaml:"interval"`
		MinAvailability str `yaml:"minAvailability"`
	} `yaml:"soak"`
	Expect struct {
		rawExpect `yaml:",inline"`
		Cells     []rawCellExpect `yaml:"cells"`
	} `yaml:"expect"`
}

type rawExpect struct {
	Outcome   str  `yaml:"outcome"`
	RootCause str  `yaml:"rootCause"`
	Evidence  strs `yaml:"evidence"`
}

type rawCellExpect struct {
	Match     map[string]str `yaml:"match"`
	rawExpect `yaml:",inline"`
}

var lineRE = regexp.MustCompile(`^line (\d+): (.*)$`)

// Load reads, parses and validates a scenario file against the catalog.
// repoRoot resolves catalog manifest paths.
func Load(path string, cat *catalog.Catalog, repoRoot string) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	return Parse(path, data, cat, repoRoot)
}

// LoadForPlan is Load for a dry run: a downloaded manifest that is not
// pinned or not cached yet is not an error but recorded in
// CNI.Unavailable, so that the plan of every cell can be printed and say
// which cannot run until then. Everything else is validated as by Load.
func LoadForPlan(path string, cat *catalog.Catalog, repoRoot string) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	return parse(path, data, cat, repoRoot, true)
}

// Parse parses and validates scenario data; path is used in messages and to
// resolve relative manifest paths.
func Parse(path string, data []byte, cat *catalog.Catalog, repoRoot string) (*Scenario, error) {
	return parse(path, data, cat, repoRoot, false)
}

func parse(path string, data []byte, cat *catalog.Catalog, repoRoot string, planOnly bool) (*Scenario, error) {
	var raw rawScenario
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&raw); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Errors{{File: path, Msg: "empty scenario file"}}
		}
		return nil, yamlErrors(path, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, Errors{{File: path, Line: extra.Line, Msg: "a scenario file holds one YAML document; found a second one"}}
	}
	v := validator{path: path, planOnly: planOnly}
	s := &Scenario{Path: path, Name: raw.Name.V, Description: raw.Description.V}
	// Each section's parser sits next to its type: cni.go, cluster.go,
	// run.go, expect.go. The CNI's is first: its versions' skips need the
	// Kubernetes versions, which it reads raw.
	v.name(&raw, s)
	cr := v.cni(&raw, s, cat, repoRoot)
	v.kubernetes(&raw, s, cat)
	v.arches(&raw, s)
	v.provider(&raw, s)
	v.nodes(&raw, s)
	v.calico(&raw, s, cr.operator, repoRoot)
	v.run(&raw, s)
	v.expect(&raw, s)
	if len(v.errs) > 0 {
		return nil, v.errs
	}
	return s, nil
}

// name parses the scenario's name.
func (v *validator) name(raw *rawScenario, s *Scenario) {
	if s.Name == "" {
		v.add(0, "name is required")
	} else if !regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`).MatchString(s.Name) {
		v.add(raw.Name.Line, "name %q: use lower-case letters, digits and '-'", s.Name)
	}
}

func (v *validator) duration(f str, name, like string, dst *time.Duration) {
	if f.V == "" {
		return
	}
	d, err := time.ParseDuration(f.V)
	if err != nil || d <= 0 {
		v.add(f.Line, "%s %q: want a duration like %s", name, f.V, like)
		return
	}
	*dst = d
}

// expectation reads one expect block; def gives what it leaves out.
type validator struct {
	path string
	errs Errors
	// planOnly: a manifest not pinned or not cached is recorded in
	// CNI.Unavailable, not an error (LoadForPlan).
	planOnly bool
}

func (v *validator) add(line int, format string, args ...any) {
	v.errs = append(v.errs, &Error{File: v.path, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func yamlErrors(path string, err error) error {
	var te *yaml.TypeError
	var out Errors
	if errors.As(err, &te) {
		for _, e := range te.Errors {
			out = append(out, lineError(path, e))
		}
		return out
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	return Errors{lineError(path, msg)}
}

func lineError(path, msg string) *Error {
	msg = strings.TrimPrefix(msg, "yaml: ")
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		var line int
		fmt.Sscanf(m[1], "%d", &line)
		text := m[2]
		if f := regexp.MustCompile(`^field (\S+) not found in type .*$`).FindStringSubmatch(text); f != nil {
			text = fmt.Sprintf("unknown field %q", f[1])
		}
		text = regexp.MustCompile(` into scenario\.\w+`).ReplaceAllString(text, "")
		return &Error{File: path, Line: line, Msg: text}
	}
	return &Error{File: path, Msg: msg}
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// HostArch is the architecture of this host in Go/OCI terms.
func HostArch() string { return runtime.GOARCH }

// Cells expands the scenario into matrix cells, resolving provider "auto":
// kind for the host's arch, qemu otherwise.
func (s *Scenario) Cells() []matrix.Cell {
	var out []matrix.Cell
	for _, v := range s.CNI.Versions {
		for _, k := range s.Kubernetes {
			for _, a := range s.Arch {
				c := matrix.Cell{CNI: s.CNI.Name, CNIVersion: v, Kubernetes: k, Arch: a, Provider: s.ProviderFor(a), Variant: s.Variant}
				if s.Upgrade != nil {
					c.UpgradeTo = s.Upgrade.To
				}
				out = append(out, c)
			}
		}
	}
	return out
}

// ProviderFor is the provider that runs nodes of arch on this host.
func (s *Scenario) ProviderFor(arch string) string {
	if s.Provider != "auto" {
		return s.Provider
	}
	if arch == HostArch() {
		return "kind"
	}
	return "qemu"
}
