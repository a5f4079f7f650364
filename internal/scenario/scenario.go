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
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cnimatrix/cnimatrix/internal/apicompat"
	"github.com/cnimatrix/cnimatrix/internal/calico"
	"github.com/cnimatrix/cnimatrix/internal/calicodata"
	"github.com/cnimatrix/cnimatrix/internal/catalog"
	"github.com/cnimatrix/cnimatrix/internal/install"
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
	Provider    string // kind | qemu | auto
	Nodes       int
	PodSubnet   string
	ServiceSub  string
	Timeouts    Timeouts
	Checks      ChecksSpec
	Variant     string
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

// Soak is the scenario's soak block.
type Soak struct {
	Duration, Interval time.Duration
	MinAvailability    float64 // percent
}

// Upgrade is the scenario's upgrade block.
type Upgrade struct {
	To       string
	Manifest string // TO's manifest (absolute path)
	// ProbeInterval is how often nginx is probed across nodes during the
	// upgrade window; MaxFailedProbes is how many failed probes the window
	// may have and still pass (default 0: an upgrade must not drop traffic).
	ProbeInterval   time.Duration
	MaxFailedProbes int
}

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

// Expectation is what a cell's result should be.
type Expectation struct {
	Outcome matrix.Outcome
	// RootCause, when set, must equal the cell's root cause.
	RootCause string
	// Evidence, when set: each string must appear in the errors or failed
	// observations of the cell's phases.
	Evidence []string
}

// CellExpect is an expectation for the cells whose fields equal Match.
type CellExpect struct {
	// Match maps a cell field (version, arch, k8s, provider, variant) to
	// the value it must have.
	Match map[string]string
	Expectation
}

// matchKeys are the cell fields an expect.cells rule can match.
var matchKeys = []string{"version", "arch", "k8s", "provider", "variant"}

func cellField(c matrix.Cell, key string) string {
	switch key {
	case "version":
		return c.CNIVersion
	case "arch":
		return c.Arch
	case "k8s":
		return c.Kubernetes
	case "provider":
		return c.Provider
	case "variant":
		return c.Variant
	}
	return "\x00"
}

// ExpectFor is what the scenario expects of cell c: the first expect.cells
// rule that matches it, else expect itself.
func (s *Scenario) ExpectFor(c matrix.Cell) Expectation {
	for _, ce := range s.CellExpects {
		ok := true
		for k, v := range ce.Match {
			if cellField(c, k) != v {
				ok = false
				break
			}
		}
		if ok {
			return ce.Expectation
		}
	}
	return s.Expect
}

// CNISpec says which CNI and versions.
type CNISpec struct {
	Name      string
	Versions  []string
	Namespace string
	Selector  string
	// Manifests maps a version to the manifest file to apply (absolute path).
	Manifests map[string]string
	// ImageOverrides replaces container images of the manifest before it is
	// applied (image -> replacement), e.g. to point at another registry.
	ImageOverrides map[string]string
	// Calico, for cni.name calico, edits calico.yaml before it is applied
	// (its PodCIDR is the scenario's podSubnet).
	Calico *calico.Options
	// Images is where a Calico install's images come from:
	// matrix.ImagesUpstream (the names the manifest uses, from the
	// registry or its mirror) or matrix.ImagesRebuiltFromSource (cnimatrix
	// builds them from Sources and serves them under those names); "" for
	// other CNIs.
	Images string
	// Pins maps a downloaded version to how its manifest is pinned:
	// catalog.PinCatalog or catalog.PinTrustedOnFirstUse.
	Pins map[string]string
	// Sources maps a version to its Calico source, for rebuilt images.
	Sources map[string]calicodata.Source
	// Unavailable maps a version whose downloaded manifest is not pinned or
	// not cached to why (LoadForPlan only: Load refuses the scenario).
	Unavailable map[string]string
}

// Timeouts bound each wait of a cell.
type Timeouts struct {
	Cluster  time.Duration
	CNIReady time.Duration
	Checks   time.Duration
}

// ChecksSpec tunes the checks.
type ChecksSpec struct {
	// ServiceTargetPort is the nginx Service's targetPort. Only harness
	// self-tests change it from 80, to prove a broken Service fails.
	ServiceTargetPort int
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
	Kubernetes    strs `yaml:"kubernetes"`
	Arch          strs `yaml:"arch"`
	Provider      str  `yaml:"provider"`
	Nodes         str  `yaml:"nodes"`
	PodSubnet     str  `yaml:"podSubnet"`
	ServiceSubnet str  `yaml:"serviceSubnet"`
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
	if s.Name == "" {
		v.add(0, "name is required")
	} else if !regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`).MatchString(s.Name) {
		v.add(raw.Name.Line, "name %q: use lower-case letters, digits and '-'", s.Name)
	}

	// CNI
	cni, ok := cat.CNI(raw.CNI.Name.V)
	switch {
	case raw.CNI.Name.V == "":
		v.add(0, "cni.name is required (known: %s)", strings.Join(cat.CNINames(), ", "))
	case !ok:
		v.add(raw.CNI.Name.Line, "unknown CNI %q (known: %s)", raw.CNI.Name.V, strings.Join(cat.CNINames(), ", "))
	}
	s.CNI = CNISpec{Name: raw.CNI.Name.V, Manifests: map[string]string{}}
	if len(raw.CNI.Versions) == 0 {
		v.add(0, "cni.versions: list at least one version")
	}
	override := ""
	if raw.CNI.Manifest.V != "" {
		override = raw.CNI.Manifest.V
		if !filepath.IsAbs(override) {
			override = filepath.Join(filepath.Dir(path), override)
		}
		if _, err := os.Stat(override); err != nil {
			v.add(raw.CNI.Manifest.Line, "cni.manifest %s: %v", raw.CNI.Manifest.V, errors.Unwrap(err))
		}
	}
	// The Kubernetes versions, read before the CNI versions so that a
	// version none of them can run is known without its manifest; they are
	// validated below.
	k8sVersions := []string{cat.DefaultKubernetes()}
	if len(raw.Kubernetes) > 0 {
		k8sVersions = nil
		for _, k := range raw.Kubernetes {
			k8sVersions = append(k8sVersions, k.V)
		}
	}
	s.skips = map[string]*Skip{}
	perVersion := map[string]string{}
	for ver, file := range raw.CNI.Manifests {
		p := file.V
		if p != "" && !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(path), p)
		}
		if _, err := os.Stat(p); p == "" || err != nil {
			v.add(file.Line, "cni.manifests: %s: %q is not a readable file", ver, file.V)
			continue
		}
		isTo := raw.Upgrade != nil && raw.Upgrade.To.V == ver
		if !isTo && !slices.ContainsFunc(raw.CNI.Versions, func(s str) bool { return s.V == ver }) {
			v.add(file.Line, "cni.manifests: %q is not one of cni.versions (nor upgrade.to)", ver)
		}
		perVersion[ver] = p
	}
	// The install method decides which of a catalog version's files it
	// needs: calico.yaml, or the operator's.
	operator := false
	if c := raw.CNI.Calico; c != nil {
		switch c.Install.V {
		case "", calico.InstallManifest:
		case calico.InstallOperator:
			operator = true
		default:
			v.add(c.Install.Line, "cni.calico.install %q: want %s or %s", c.Install.V, calico.InstallManifest, calico.InstallOperator)
		}
	}
	for _, ver := range raw.CNI.Versions {
		if ok {
			cv, known := cni.Version(ver.V)
			skipped := 0
			if known && perVersion[ver.V] == "" && override == "" {
				skipped = s.addSkips(cni.Name, cv, k8sVersions)
			}
			switch {
			case perVersion[ver.V] != "":
				s.CNI.Manifests[ver.V] = perVersion[ver.V]
			case override != "":
				s.CNI.Manifests[ver.V] = override
			case !known:
				v.add(ver.Line, "unknown %s version %q (known: %s; or give cni.manifest or cni.manifests)", cni.Name, ver.V, strings.Join(cni.VersionNames(), ", "))
			case skipped == len(k8sVersions):
				// Every cell of the version is skipped: no manifest to resolve.
			case len(cv.Remote) > 0:
				p, pin, err := remoteManifest(cni.Name, cv, operator)
				switch {
				case err != nil && v.planOnly:
					if s.CNI.Unavailable == nil {
						s.CNI.Unavailable = map[string]string{}
					}
					s.CNI.Unavailable[ver.V] = err.Error()
				case err != nil:
					v.add(ver.Line, "%v", err)
				}
				s.CNI.Manifests[ver.V] = p
				if s.CNI.Pins == nil {
					s.CNI.Pins = map[string]string{}
				}
				s.CNI.Pins[ver.V] = pin
			default:
				s.CNI.Manifests[ver.V] = filepath.Join(repoRoot, cv.Manifest)
			}
		}
		s.CNI.Versions = append(s.CNI.Versions, ver.V)
	}
	if raw.Upgrade != nil {
		s.Upgrade = v.upgrade(raw.Upgrade.To, raw.Upgrade.ProbeInterval, raw.Upgrade.MaxFailedProbes, s.CNI.Versions, perVersion[raw.Upgrade.To.V], override, cni, ok, operator, repoRoot)
	}
	if ok {
		s.CNI.Namespace, s.CNI.Selector = cni.Namespace, cni.Selector
		if operator {
			s.CNI.Namespace = calico.OperatorNamespace
		}
	}
	if raw.CNI.Namespace.V != "" {
		s.CNI.Namespace = raw.CNI.Namespace.V
	}
	if raw.CNI.Selector.V != "" {
		s.CNI.Selector = raw.CNI.Selector.V
	}
	for from, to := range raw.CNI.ImageOverrides {
		if from == "" || to.V == "" || strings.ContainsAny(from+to.V, " \t") {
			v.add(to.Line, "cni.imageOverrides: %q -> %q: want image references", from, to.V)
			continue
		}
		if s.CNI.ImageOverrides == nil {
			s.CNI.ImageOverrides = map[string]string{}
		}
		s.CNI.ImageOverrides[from] = to.V
	}

	// Kubernetes
	if len(raw.Kubernetes) == 0 {
		s.Kubernetes = []string{cat.DefaultKubernetes()}
	}
	for _, k := range raw.Kubernetes {
		if !cat.HasKubernetes(k.V) {
			v.add(k.Line, "unknown Kubernetes version %q (known: %s)", k.V, strings.Join(cat.KubernetesVersions(), ", "))
		}
		s.Kubernetes = append(s.Kubernetes, k.V)
	}

	// Arch
	if len(raw.Arch) == 0 {
		s.Arch = []string{HostArch()}
	}
	for _, a := range raw.Arch {
		if a.V != "amd64" && a.V != "arm64" {
			v.add(a.Line, "unknown arch %q (known: amd64, arm64)", a.V)
		}
		s.Arch = append(s.Arch, a.V)
	}

	// Provider
	s.Provider = raw.Provider.V
	if s.Provider == "" {
		s.Provider = "auto"
	}
	switch s.Provider {
	case "auto", "kind", "qemu":
	default:
		v.add(raw.Provider.Line, "unknown provider %q (known: auto, kind, qemu)", s.Provider)
	}
	if s.Provider == "kind" {
		for _, a := range raw.Arch {
			if a.V != HostArch() && (a.V == "amd64" || a.V == "arm64") {
				v.add(a.Line, "provider kind cannot run %s nodes on this %s host: kind nodes under qemu-user emulation run %s binaries natively and break iptables, so they would hide exactly the failures cnimatrix looks for; use provider qemu (or auto)", a.V, HostArch(), HostArch())
			}
		}
	}

	// Nodes and networks
	s.Nodes = 2
	if raw.Nodes.V != "" {
		var n int
		if _, err := fmt.Sscanf(raw.Nodes.V, "%d", &n); err != nil || n < 1 || n > 10 || fmt.Sprint(n) != raw.Nodes.V {
			v.add(raw.Nodes.Line, "nodes %q: want a whole number from 1 to 10", raw.Nodes.V)
		}
		s.Nodes = n
	}
	s.PodSubnet = orDefault(raw.PodSubnet.V, "10.244.0.0/16")
	s.ServiceSub = orDefault(raw.ServiceSubnet.V, "10.96.0.0/16")
	for _, c := range []struct {
		s    str
		name string
	}{{raw.PodSubnet, "podSubnet"}, {raw.ServiceSubnet, "serviceSubnet"}} {
		if c.s.V != "" && !regexp.MustCompile(`^\d+\.\d+\.\d+\.\d+/\d+$`).MatchString(c.s.V) {
			v.add(c.s.Line, "%s %q: want an IPv4 CIDR like 10.244.0.0/16", c.name, c.s.V)
		}
	}

	if c := raw.CNI.Calico; c != nil {
		s.CNI.Calico = v.calicoOptions(c.Encapsulation, c.MTU, c.Registry, s, operator)
	}
	if s.CNI.Name == "calico" {
		v.calicoImages(raw.CNI.Calico, s, repoRoot)
	}

	// Timeouts
	s.Timeouts = Timeouts{Cluster: 6 * time.Minute, CNIReady: 5 * time.Minute, Checks: 5 * time.Minute}
	v.duration(raw.Timeouts.Cluster, "timeouts.cluster", "90s or 5m", &s.Timeouts.Cluster)
	v.duration(raw.Timeouts.CNIReady, "timeouts.cniReady", "90s or 5m", &s.Timeouts.CNIReady)
	v.duration(raw.Timeouts.Checks, "timeouts.checks", "90s or 5m", &s.Timeouts.Checks)
	s.Checks.ServiceTargetPort = 80
	if raw.Checks.ServiceTargetPort.V != "" {
		var p int
		if _, err := fmt.Sscanf(raw.Checks.ServiceTargetPort.V, "%d", &p); err != nil || p < 1 || p > 65535 {
			v.add(raw.Checks.ServiceTargetPort.Line, "checks.serviceTargetPort %q: want a port number", raw.Checks.ServiceTargetPort.V)
		}
		s.Checks.ServiceTargetPort = p
	}
	s.Variant = raw.Variant.V
	if s.Variant != "" && !regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`).MatchString(s.Variant) {
		v.add(raw.Variant.Line, "variant %q: use lower-case letters, digits and '-'", s.Variant)
	}
	switch raw.ReuseClusters.V {
	case "", "false":
	case "true":
		s.ReuseClusters = true
	default:
		v.add(raw.ReuseClusters.Line, "reuseClusters %q: want true or false", raw.ReuseClusters.V)
	}
	if raw.Soak != nil {
		s.Soak = Soak{Interval: time.Second, MinAvailability: 100}
		v.duration(raw.Soak.Duration, "soak.duration", "30s or 10h", &s.Soak.Duration)
		v.duration(raw.Soak.Interval, "soak.interval", "30s or 10h", &s.Soak.Interval)
		if s.Soak.Duration == 0 {
			v.add(raw.Soak.Duration.Line, "soak.duration is required in a soak block")
		} else if s.Soak.Interval >= s.Soak.Duration {
			v.add(raw.Soak.Interval.Line, "soak.interval %s must be shorter than soak.duration %s", s.Soak.Interval, s.Soak.Duration)
		}
		if m := raw.Soak.MinAvailability; m.V != "" {
			f, err := strconv.ParseFloat(strings.TrimSuffix(m.V, "%"), 64)
			if err != nil || f < 0 || f > 100 {
				v.add(m.Line, "soak.minAvailability %q: want a percentage from 0 to 100", m.V)
			}
			s.Soak.MinAvailability = f
		}
	}
	s.Expect = v.expectation("expect", raw.Expect.rawExpect, Expectation{Outcome: matrix.Pass})
	for i, rc := range raw.Expect.Cells {
		where := fmt.Sprintf("expect.cells[%d]", i)
		ce := CellExpect{Match: map[string]string{}, Expectation: v.expectation(where, rc.rawExpect, s.Expect)}
		if len(rc.Match) == 0 {
			v.add(rc.Outcome.Line, "%s: match is required (keys: %s)", where, strings.Join(matchKeys, ", "))
		}
		for k, val := range rc.Match {
			ce.Match[k] = val.V
			var known []string
			switch k {
			case "version":
				known = s.CNI.Versions
			case "arch":
				known = s.Arch
			case "k8s":
				known = s.Kubernetes
			case "provider", "variant":
			default:
				v.add(val.Line, "%s.match: unknown key %q (known: %s)", where, k, strings.Join(matchKeys, ", "))
				continue
			}
			if known != nil && !slices.Contains(known, val.V) {
				v.add(val.Line, "%s.match: %s %q is not one of the scenario's (%s): the rule would match no cell", where, k, val.V, strings.Join(known, ", "))
			}
		}
		s.CellExpects = append(s.CellExpects, ce)
	}
	if len(v.errs) > 0 {
		return nil, v.errs
	}
	return s, nil
}

// addSkips records why version cv cannot run on each of k8sVersions that
// it cannot run on, and returns how many those are. A Kubernetes version
// that does not parse is left to the Kubernetes validation to report.
func (s *Scenario) addSkips(cni string, cv *catalog.CNIVersion, k8sVersions []string) int {
	n := 0
	for _, k := range k8sVersions {
		r, err := cv.SkipReason(cni, k)
		if err != nil || r == "" {
			continue
		}
		removed, _ := cv.CannotRunOn(k)
		s.skips[skipKey(cv.Version, k)] = &Skip{Reason: r, Removed: removed, Images: cv.Images}
		n++
	}
	return n
}

// upgrade reads the upgrade block. TO's manifest comes from cni.manifests,
// else cni.manifest, else the catalog, as the versions' do.
func (v *validator) upgrade(to, interval, maxFailed str, from []string, perVersion, override string, cni *catalog.CNI, cniKnown, operator bool, repoRoot string) *Upgrade {
	u := &Upgrade{To: to.V, ProbeInterval: time.Second}
	switch {
	case to.V == "":
		v.add(to.Line, "upgrade.to is required: the CNI version each cell upgrades to")
	case slices.Contains(from, to.V):
		v.add(to.Line, "upgrade.to %q is also one of cni.versions: a cell would upgrade to the version it runs", to.V)
	case perVersion != "":
		u.Manifest = perVersion
	case override != "":
		u.Manifest = override
	case cniKnown:
		cv, known := cni.Version(to.V)
		if !known {
			v.add(to.Line, "upgrade.to: unknown %s version %q (known: %s; or give its file in cni.manifests)", cni.Name, to.V, strings.Join(cni.VersionNames(), ", "))
		} else if len(cv.Remote) > 0 {
			p, _, err := remoteManifest(cni.Name, cv, operator)
			if err != nil {
				v.add(to.Line, "upgrade.to: %v", err)
			}
			u.Manifest = p
		} else {
			u.Manifest = filepath.Join(repoRoot, cv.Manifest)
		}
	}
	if interval.V != "" {
		d, err := time.ParseDuration(interval.V)
		if err != nil || d < 100*time.Millisecond || d > time.Minute {
			v.add(interval.Line, "upgrade.probeInterval %q: want a duration from 100ms to 1m", interval.V)
		}
		u.ProbeInterval = d
	}
	if maxFailed.V != "" {
		n, err := strconv.Atoi(maxFailed.V)
		if err != nil || n < 0 {
			v.add(maxFailed.Line, "upgrade.maxFailedProbes %q: want a whole number, 0 or more", maxFailed.V)
		}
		u.MaxFailedProbes = n
	}
	return u
}

// calicoOptions reads cni.calico and tries the edits on every manifest the
// scenario applies, so that an option a version's manifest cannot take
// (VXLAN on v3.2, an MTU of "auto" before v3.19) is an error of the
// scenario file, before any cluster exists.
func (v *validator) calicoOptions(encap, mtu, registry str, s *Scenario, operator bool) *calico.Options {
	o := &calico.Options{PodCIDR: s.PodSubnet, Registry: registry.V, Install: calico.InstallManifest}
	if operator {
		o.Install = calico.InstallOperator
	}
	if s.CNI.Name != "calico" {
		v.add(encap.Line, "cni.calico: only for cni.name calico, not %q", s.CNI.Name)
		return o
	}
	if encap.V != "" {
		e, err := calico.ParseEncapsulation(encap.V)
		if err != nil {
			v.add(encap.Line, "cni.calico.%v", err)
		}
		o.Encapsulation = e
	}
	if mtu.V != "" {
		n, err := strconv.Atoi(mtu.V)
		if err != nil {
			v.add(mtu.Line, "cni.calico.mtu %q: want a number (0 = auto)", mtu.V)
		}
		o.MTU = n
	}
	if len(v.errs) > 0 {
		return o
	}
	for _, path := range s.ManifestPaths() {
		data, err := os.ReadFile(path)
		if err != nil {
			continue // reported where the manifest was resolved
		}
		objs, err := install.ParseManifest(data)
		if err == nil {
			_, err = calico.ConfigureFor(objs, *o)
		}
		if err != nil {
			v.add(encap.Line, "cni.calico: %s: %v", path, err)
		}
	}
	return o
}

// calicoImages reads cni.calico.images: upstream (the default) or source,
// which needs every version's source release in the Calico data
// (calicodata.Find) and builds its images instead of pulling them.
func (v *validator) calicoImages(c *rawCalico, s *Scenario, repoRoot string) {
	s.CNI.Images = matrix.ImagesUpstream
	if c == nil || c.Images.V == "" || c.Images.V == "upstream" {
		return
	}
	if c.Images.V != "source" {
		v.add(c.Images.Line, "cni.calico.images %q: want upstream (pull the released images) or source (build them from the release's source)", c.Images.V)
		return
	}
	if c.Install.V == calico.InstallOperator {
		v.add(c.Images.Line, "cni.calico.images: source builds calico/node, cni and kube-controllers, not the tigera-operator nor the images it deploys: use it with install: manifest")
		return
	}
	s.CNI.Images = matrix.ImagesRebuiltFromSource
	d, err := calicodata.Find(repoRoot)
	if err != nil {
		v.add(c.Images.Line, "cni.calico.images: source: %v", err)
		return
	}
	s.CNI.Sources = map[string]calicodata.Source{}
	versions := slices.Clone(s.CNI.Versions)
	if s.Upgrade != nil {
		versions = append(versions, s.Upgrade.To)
	}
	for _, ver := range versions {
		src, err := d.Source(ver)
		if err != nil {
			v.add(c.Images.Line, "cni.calico.images: source: %v", err)
			continue
		}
		s.CNI.Sources[ver] = src
	}
}

// rawCalico is the cni.calico block as written.
type rawCalico struct {
	Install       str `yaml:"install"`
	Encapsulation str `yaml:"encapsulation"`
	MTU           str `yaml:"mtu"`
	Registry      str `yaml:"registry"`
	// Images: upstream (default) or source.
	Images str `yaml:"images"`
}

// duration reads a positive duration into dst, leaving dst as it is when
// the field is not given.
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
func (v *validator) expectation(where string, r rawExpect, def Expectation) Expectation {
	e := Expectation{Outcome: def.Outcome, RootCause: r.RootCause.V}
	if r.Outcome.V != "" {
		e.Outcome = matrix.Outcome(r.Outcome.V)
		if !e.Outcome.Valid() {
			v.add(r.Outcome.Line, "%s.outcome %q: want pass, fail, infra-error, skipped or unknown", where, r.Outcome.V)
		}
	}
	for _, ev := range r.Evidence {
		if strings.TrimSpace(ev.V) == "" {
			v.add(ev.Line, "%s.evidence: empty string", where)
			continue
		}
		e.Evidence = append(e.Evidence, ev.V)
	}
	return e
}

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
