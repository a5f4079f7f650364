package catalog

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/cnimatrix/cnimatrix/internal/apicompat"
)

//go:embed calico.yaml
var calicoYAML []byte

// CalicoFile is the catalog's source file, relative to the repository root;
// `cnimatrix catalog update --write` rewrites its pins there.
const CalicoFile = "internal/catalog/calico.yaml"

// Calico is the Calico catalog: the versions cnimatrix knows how to fetch.
type Calico struct {
	Versions []CalicoVersion `yaml:"versions"`
}

// CalicoVersion is one Calico release.
type CalicoVersion struct {
	Version string `yaml:"version"`
	// Kubernetes lists the minors (v1.NN) the release was tested against.
	Kubernetes []string `yaml:"kubernetes"`
	// Manifests are applied in order for a manifest (calico.yaml) install;
	// v3.2 needs three files, later versions one.
	Manifests []RemoteFile `yaml:"manifests"`
	// Operator holds the operator install's files, in apply order; empty
	// before v3.15.
	Operator    []RemoteFile `yaml:"operator"`
	Images      []string     `yaml:"images"`
	Arm64       string       `yaml:"arm64"`
	Arm64Issues []Issue      `yaml:"arm64Issues"`
	// RemovedAPIs are the Kubernetes APIs its manifests use that later
	// Kubernetes releases removed (apicompat's table): a cell whose
	// Kubernetes no longer serves one is skipped with that reason, without
	// the manifest. `catalog update` checks the list against the download.
	RemovedAPIs []apicompat.API `yaml:"removedAPIs"`
}

// RemoteFile is a file the harness downloads. An empty SHA256 means not
// pinned yet: it may be downloaded to learn its sum, never applied blind.
type RemoteFile struct {
	URL    string `yaml:"url"`
	SHA256 string `yaml:"sha256"`
}

// Pinned reports whether the file's checksum is known.
func (f RemoteFile) Pinned() bool { return f.SHA256 != "" }

// Name is the file's base name, e.g. "calico.yaml".
func (f RemoteFile) Name() string {
	return f.URL[strings.LastIndex(f.URL, "/")+1:]
}

// Issue is an upstream issue that affects arm64 nodes.
type Issue struct {
	Ref     string `yaml:"ref"` // owner/repo#N
	Summary string `yaml:"summary"`
	// FixedIn is the patch release that fixed it, when the catalog's patch
	// release already has the fix (kept so old reports stay explainable).
	FixedIn string `yaml:"fixedIn"`
}

var (
	calicoVersionRE = regexp.MustCompile(`^v(\d+)\.(\d+)\.(\d+)$`)
	k8sMinorRE      = regexp.MustCompile(`^v1\.(\d+)$`)
	sha256RE        = regexp.MustCompile(`^[0-9a-f]{64}$`)
	issueRefRE      = regexp.MustCompile(`^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+#[1-9]\d*$`)
)

// LoadCalico parses the embedded Calico catalog.
func LoadCalico() (*Calico, error) { return ParseCalico(calicoYAML) }

// ParseCalico parses and validates Calico catalog data. Unknown fields are
// errors: a misspelt "sha256" would otherwise read as "not pinned".
func ParseCalico(data []byte) (*Calico, error) {
	var c Calico
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("calico.yaml: %w", err)
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("calico.yaml: %w", err)
	}
	return &c, nil
}

func (c *Calico) validate() error {
	if len(c.Versions) == 0 {
		return errors.New("no versions")
	}
	var errs []error
	seen := map[string]bool{}
	urls := map[string]string{}
	for i, v := range c.Versions {
		where := fmt.Sprintf("versions[%d] %s", i, v.Version)
		if !calicoVersionRE.MatchString(v.Version) {
			errs = append(errs, fmt.Errorf("%s: version %q: want vMAJOR.MINOR.PATCH", where, v.Version))
		}
		if seen[v.Version] {
			errs = append(errs, fmt.Errorf("%s: listed twice", where))
		}
		seen[v.Version] = true
		if len(v.Kubernetes) == 0 {
			errs = append(errs, fmt.Errorf("%s: kubernetes: list the minors it supports", where))
		}
		for _, k := range v.Kubernetes {
			if !k8sMinorRE.MatchString(k) {
				errs = append(errs, fmt.Errorf("%s: kubernetes %q: want a minor like v1.30", where, k))
			}
		}
		if len(v.Manifests) == 0 {
			errs = append(errs, fmt.Errorf("%s: manifests: at least one file", where))
		}
		files := append(append([]RemoteFile(nil), v.Manifests...), v.Operator...)
		for _, f := range files {
			if err := f.validate(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
			}
			// Two versions sharing a URL would share a pin, and one of
			// them would be the wrong release.
			if other, dup := urls[f.URL]; dup {
				errs = append(errs, fmt.Errorf("%s: %s is also a file of %s", where, f.URL, other))
			}
			urls[f.URL] = v.Version
		}
		if len(v.Images) == 0 {
			errs = append(errs, fmt.Errorf("%s: images: list the images its manifests use", where))
		}
		for _, im := range v.Images {
			if im == "" || strings.ContainsAny(im, " \t") || !strings.Contains(im, ":") {
				errs = append(errs, fmt.Errorf("%s: image %q: want repository:tag", where, im))
			}
		}
		if v.Arm64 == "" {
			errs = append(errs, fmt.Errorf("%s: arm64: say how its images reach arm64 nodes", where))
		}
		seenAPI := map[apicompat.API]bool{}
		for _, a := range v.RemovedAPIs {
			if _, ok := apicompat.Lookup(a.APIVersion, a.Kind); !ok || a.Kind == "" {
				errs = append(errs, fmt.Errorf("%s: removedAPIs: %s is not a removed Kubernetes API (internal/apicompat)", where, a))
			}
			if seenAPI[a] {
				errs = append(errs, fmt.Errorf("%s: removedAPIs: %s listed twice", where, a))
			}
			seenAPI[a] = true
		}
		for _, is := range v.Arm64Issues {
			if !issueRefRE.MatchString(is.Ref) {
				errs = append(errs, fmt.Errorf("%s: issue %q: want owner/repo#N", where, is.Ref))
			}
			if is.Summary == "" {
				errs = append(errs, fmt.Errorf("%s: issue %s: summary is required", where, is.Ref))
			}
			if is.FixedIn != "" && !calicoVersionRE.MatchString(is.FixedIn) {
				errs = append(errs, fmt.Errorf("%s: issue %s: fixedIn %q: want vMAJOR.MINOR.PATCH", where, is.Ref, is.FixedIn))
			}
		}
	}
	return errors.Join(errs...)
}

func (f RemoteFile) validate() error {
	u, err := url.Parse(f.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" || f.Name() == "" {
		return fmt.Errorf("url %q: want an https URL of a file", f.URL)
	}
	if f.SHA256 != "" && !sha256RE.MatchString(f.SHA256) {
		return fmt.Errorf("%s: sha256 %q: want 64 lower-case hex digits, or empty for not pinned", f.URL, f.SHA256)
	}
	return nil
}

// Version returns release v; the error lists the known ones.
func (c *Calico) Version(v string) (*CalicoVersion, error) {
	for i := range c.Versions {
		if c.Versions[i].Version == v {
			return &c.Versions[i], nil
		}
	}
	return nil, fmt.Errorf("unknown Calico version %q (known: %s)", v, strings.Join(c.VersionNames(), ", "))
}

// VersionNames lists the known versions in catalog order.
func (c *Calico) VersionNames() []string {
	out := make([]string, 0, len(c.Versions))
	for _, v := range c.Versions {
		out = append(out, v.Version)
	}
	return out
}

// KubernetesRange is the supported minors as "v1.16-v1.18".
func (v *CalicoVersion) KubernetesRange() string {
	if len(v.Kubernetes) == 0 {
		return ""
	}
	lo, hi := v.Kubernetes[0], v.Kubernetes[0]
	for _, k := range v.Kubernetes {
		if minor(k) < minor(lo) {
			lo = k
		}
		if minor(k) > minor(hi) {
			hi = k
		}
	}
	if lo == hi {
		return lo
	}
	return lo + "-" + hi
}

// SupportsKubernetes reports whether the release was tested against the
// minor of k8s (a full version like v1.36.3 or a minor like v1.36).
func (v *CalicoVersion) SupportsKubernetes(k8s string) bool {
	if parts := strings.SplitN(k8s, ".", 3); len(parts) == 3 {
		k8s = parts[0] + "." + parts[1]
	}
	for _, k := range v.Kubernetes {
		if k == k8s {
			return true
		}
	}
	return false
}

// Files is every file of the release: manifests, then operator files.
func (v *CalicoVersion) Files() []*RemoteFile {
	var out []*RemoteFile
	for i := range v.Manifests {
		out = append(out, &v.Manifests[i])
	}
	for i := range v.Operator {
		out = append(out, &v.Operator[i])
	}
	return out
}

// Pinned reports whether every manifest (not operator file) is pinned: what
// a manifest install needs.
func (v *CalicoVersion) Pinned() bool {
	for _, f := range v.Manifests {
		if !f.Pinned() {
			return false
		}
	}
	return true
}

func minor(k string) int {
	m := k8sMinorRE.FindStringSubmatch(k)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// CalicoNamespace and CalicoSelector find calico.yaml's calico-node pods
// (kube-system in every version from v3.1 to v3.32).
const (
	CalicoNamespace = "kube-system"
	CalicoSelector  = "k8s-app=calico-node"
)

// addCalico lists the Calico catalog as the CNI "calico" for a calico.yaml
// (manifest) install.
func (c *Catalog) addCalico(cal *Calico) {
	c.Calico = cal
	n := CNI{Name: "calico", Description: "Project Calico, calico.yaml install (downloaded; see internal/catalog/calico.yaml)",
		Namespace: CalicoNamespace, Selector: CalicoSelector}
	for _, v := range cal.Versions {
		n.Versions = append(n.Versions, CNIVersion{Version: v.Version, Images: v.Images, Remote: v.Manifests, Operator: v.Operator,
			RemovedAPIs: v.RemovedAPIs, Tested: v.KubernetesRange()})
	}
	c.CNIs = append(c.CNIs, n)
}
