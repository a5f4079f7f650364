// Package matrix holds the compatibility matrix: one cell per CNI version x
// Kubernetes version x arch x provider, each with an outcome and the evidence
// behind it. The JSON form is the source of truth; other formats render it.
package matrix

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

// SchemaVersion of the JSON document.
const SchemaVersion = "cnimatrix.io/v1"

// Outcome of a cell.
type Outcome string

const (
	Pass       Outcome = "pass"
	Fail       Outcome = "fail"
	InfraError Outcome = "infra-error"
	Skipped    Outcome = "skipped"
	// Unknown is the outcome of a cell without a result: never read as pass.
	Unknown Outcome = "unknown"
)

// Valid reports whether o is one of the defined outcomes.
func (o Outcome) Valid() bool {
	switch o {
	case Pass, Fail, InfraError, Skipped, Unknown:
		return true
	}
	return false
}

// Where a cell's CNI images came from (Result.Images): released images
// pulled under their upstream names, or rebuilt by cnimatrix from the
// release's source. A rebuilt image's PASS speaks for the source, not for
// the images upstream published.
const (
	ImagesUpstream          = "upstream"
	ImagesRebuiltFromSource = "rebuilt-from-source"
)

// ImageSource is where the run's registry got one image a cell's manifest
// names: built (by cnimatrix), rebuilt-from-source, imported (`cnimatrix
// images import`), pulled-through (from its upstream, Detail) or missing.
type ImageSource struct {
	Image  string `json:"image"`
	Source string `json:"source"`
	Detail string `json:"detail,omitempty"`
}

// Fidelity of a cell's nodes.
const (
	FidelityNative     = "native"
	FidelityVMEmulated = "vm-emulated"
)

// Cell identifies one matrix cell.
type Cell struct {
	CNI        string `json:"cni"`
	CNIVersion string `json:"cniVersion"`
	Kubernetes string `json:"kubernetes"`
	Arch       string `json:"arch"`
	Provider   string `json:"provider"`
	// Variant distinguishes cells that differ in something else (install method, registry, a fixture).
	Variant string `json:"variant,omitempty"`
	// UpgradeTo, on an upgrade-path cell, is the CNI version the cell
	// upgrades to in place after CNIVersion passed its checks.
	UpgradeTo string `json:"upgradeTo,omitempty"`
}

// ID is a stable, filesystem- and label-safe identifier of the cell.
func (c Cell) ID() string {
	id := fmt.Sprintf("%s-%s_k8s-%s_%s_%s", c.CNI, c.CNIVersion, c.Kubernetes, c.Arch, c.Provider)
	if c.Variant != "" {
		id += "_" + c.Variant
	}
	if c.UpgradeTo != "" {
		id += "_to-" + c.UpgradeTo
	}
	return id
}

// VersionLabel is the CNI version as a report shows it: "FROM → TO" on an
// upgrade-path cell.
func (c Cell) VersionLabel() string {
	if c.UpgradeTo != "" {
		return c.CNIVersion + " → " + c.UpgradeTo
	}
	return c.CNIVersion
}

func (c Cell) String() string { return c.ID() }

// Evidence is one observation behind a verdict.
type Evidence struct {
	Check     string  `json:"check,omitempty"`
	Source    string  `json:"source,omitempty"`
	Target    string  `json:"target,omitempty"`
	OK        bool    `json:"ok"`
	Detail    string  `json:"detail,omitempty"`
	LatencyMS float64 `json:"latencyMs,omitempty"`
	Attempts  int     `json:"attempts,omitempty"`
	// Finding is, for an image audit's observation, the finding's kind
	// (archaudit.Kind: ok, no-variant, mislabeled, error).
	Finding string `json:"finding,omitempty"`
}

// Phase is one timed step of a cell's run.
type Phase struct {
	Name string `json:"name"`
	// Step is the pipeline step that recorded the phase ("checks" for
	// every check:… phase, "upgrade" for an upgrade's phases).
	Step       string     `json:"step,omitempty"`
	Outcome    Outcome    `json:"outcome"`
	Start      time.Time  `json:"start"`
	DurationMS float64    `json:"durationMs"`
	Error      string     `json:"error,omitempty"`
	Evidence   []Evidence `json:"evidence,omitempty"`
	// Infra marks phases whose failure is the harness's or the host's, not the CNI's.
	Infra bool `json:"infra,omitempty"`
	// Cause is the phase's root cause when the step that failed knew it
	// (kernel-feature, arch-mismatch, arch-not-exercised, ...): diagnosis
	// reads it before it reads any message.
	Cause string `json:"cause,omitempty"`
}

// Duration of the phase.
func (p Phase) Duration() time.Duration {
	return time.Duration(p.DurationMS * float64(time.Millisecond))
}

// Result is a cell's outcome with its evidence.
type Result struct {
	Cell
	ID       string  `json:"id"`
	Outcome  Outcome `json:"outcome"`
	Fidelity string  `json:"fidelity,omitempty"`
	// Images says where the CNI's images came from (ImagesUpstream,
	// ImagesRebuiltFromSource); empty for the harness's own CNI fixtures.
	Images string `json:"images,omitempty"`
	// ImageSources say, per image of the CNI's manifest, where the run's
	// registry got what the nodes ran under that name.
	ImageSources []ImageSource `json:"imageSources,omitempty"`
	// NodeImage is the kind node image the cell's kind nodes booted and
	// where it came from: built here, or kind's published one pulled
	// through (run --upstream-node-images).
	NodeImage *ImageSource `json:"nodeImage,omitempty"`
	// ManifestPin says how a downloaded manifest was pinned: "pinned" (the
	// catalog) or "trusted-on-first-use" (the user's lock); empty for
	// local files.
	ManifestPin string `json:"manifestPin,omitempty"`
	Reason      string `json:"reason,omitempty"`
	RootCause   string `json:"rootCause,omitempty"`
	ClusterName string `json:"clusterName,omitempty"`
	// Installed is the CNI an existing cluster was found running (provider
	// existing, installed mode): "calico v3.32.1".
	Installed  string    `json:"installed,omitempty"`
	Artifacts  string    `json:"artifacts,omitempty"`
	Start      time.Time `json:"start"`
	DurationMS float64   `json:"durationMs"`
	Phases     []Phase   `json:"phases"`
}

// Matrix is the whole document.
type Matrix struct {
	Schema    string    `json:"schema"`
	Scenario  string    `json:"scenario"`
	Generated time.Time `json:"generated"`
	Host      Host      `json:"host"`
	Results   []Result  `json:"results"`
}

// Host describes where the matrix was produced.
type Host struct {
	Arch     string `json:"arch"`
	Kernel   string `json:"kernel,omitempty"`
	Cgroup   string `json:"cgroup,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	Version  string `json:"cnimatrixVersion,omitempty"`
}

// New returns an empty matrix in which every expected cell is Unknown, so a
// cell that never reports stays visibly without a result.
func New(scenario string, cells []Cell) *Matrix {
	m := &Matrix{Schema: SchemaVersion, Scenario: scenario, Generated: time.Now().UTC()}
	for _, c := range cells {
		m.Results = append(m.Results, Result{Cell: c, ID: c.ID(), Outcome: Unknown, Reason: "no result recorded"})
	}
	return m
}

// Record sets the result of its cell, adding the cell if it was not expected.
func (m *Matrix) Record(r Result) {
	r.ID = r.Cell.ID()
	if !r.Outcome.Valid() {
		r.Reason = fmt.Sprintf("invalid outcome %q recorded; %s", r.Outcome, r.Reason)
		r.Outcome = Unknown
	}
	for i := range m.Results {
		if m.Results[i].ID == r.ID {
			m.Results[i] = r
			return
		}
	}
	m.Results = append(m.Results, r)
}

// Get returns the result of the cell with that ID.
func (m *Matrix) Get(id string) (Result, bool) {
	for _, r := range m.Results {
		if r.ID == id {
			return r, true
		}
	}
	return Result{}, false
}

// Sort orders results by CNI, CNI version, Kubernetes version, arch, provider, variant.
func (m *Matrix) Sort() {
	sort.SliceStable(m.Results, func(i, j int) bool { return m.Results[i].ID < m.Results[j].ID })
}

// Counts returns how many cells have each outcome.
func (m *Matrix) Counts() map[Outcome]int {
	c := map[Outcome]int{}
	for _, r := range m.Results {
		c[r.Outcome]++
	}
	return c
}

// Summary is a one-line count of outcomes.
func (m *Matrix) Summary() string {
	c := m.Counts()
	var parts []string
	for _, o := range []Outcome{Pass, Fail, InfraError, Skipped, Unknown} {
		parts = append(parts, fmt.Sprintf("%d %s", c[o], o))
	}
	return fmt.Sprintf("%d cells: %s", len(m.Results), strings.Join(parts, ", "))
}

// WriteJSON writes the matrix to path.
func (m *Matrix) WriteJSON(path string) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode matrix: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write matrix %s: %w", path, err)
	}
	return nil
}

// ReadJSON reads a matrix written by WriteJSON; results with a missing or
// invalid outcome are read as Unknown.
func ReadJSON(path string) (*Matrix, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read matrix: %w", err)
	}
	var m Matrix
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("parse matrix %s: %w", path, err)
	}
	if m.Schema != SchemaVersion {
		return nil, fmt.Errorf("parse matrix %s: schema %q, want %q", path, m.Schema, SchemaVersion)
	}
	for i := range m.Results {
		if !m.Results[i].Outcome.Valid() {
			m.Results[i].Outcome = Unknown
		}
		m.Results[i].ID = m.Results[i].Cell.ID()
	}
	return &m, nil
}
