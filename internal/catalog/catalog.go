// Package catalog is the data cnimatrix knows about: Kubernetes versions it
// can build and CNI versions with their manifests and images. The data lives
// in YAML files beside this package and is read at run time.
package catalog

import (
	_ "embed"
	"fmt"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/cnimatrix/cnimatrix/internal/apicompat"
)

//go:embed catalog.yaml
var catalogYAML []byte

// Catalog is the parsed catalog.
type Catalog struct {
	Kubernetes []KubernetesVersion `yaml:"kubernetes"`
	CNIs       []CNI               `yaml:"cnis"`
	// Calico is calico.yaml; Load also lists it in CNIs as "calico", so
	// scenarios name it like any other CNI.
	Calico *Calico `yaml:"-"`
}

// KubernetesVersion is a Kubernetes release the harness can build.
type KubernetesVersion struct {
	Version string `yaml:"version"`
	Default bool   `yaml:"default"`
}

// CNI is one network plugin and its known versions.
type CNI struct {
	Name        string       `yaml:"name"`
	Description string       `yaml:"description"`
	Namespace   string       `yaml:"namespace"`
	Selector    string       `yaml:"selector"`
	Offline     bool         `yaml:"offline"`
	Versions    []CNIVersion `yaml:"versions"`
}

// CNIVersion is one release of a CNI.
type CNIVersion struct {
	Version  string   `yaml:"version"`
	Manifest string   `yaml:"manifest"`
	Images   []string `yaml:"images"`
	// Remote, instead of Manifest, are files to download and apply in
	// order (Calico's versions); they come from calico.yaml.
	Remote []RemoteFile `yaml:"-"`
	// Operator are the operator install's files, in apply order (Calico
	// v3.15 and later).
	Operator []RemoteFile `yaml:"-"`
	// RemovedAPIs are the removed Kubernetes APIs its manifest uses and
	// Tested the Kubernetes minors it was tested on ("v1.8-v1.10"); from
	// calico.yaml, so that a cell the Kubernetes version cannot run is
	// known without the manifest (CannotRunOn).
	RemovedAPIs []apicompat.API `yaml:"-"`
	Tested      string          `yaml:"-"`
}

// CannotRunOn returns the removed APIs of the version's manifest that
// Kubernetes k8s no longer serves, in catalog order: empty when nothing
// known stops it.
func (v *CNIVersion) CannotRunOn(k8s string) ([]apicompat.Removal, error) {
	var out []apicompat.Removal
	for _, a := range v.RemovedAPIs {
		r, ok := apicompat.Lookup(a.APIVersion, a.Kind)
		if !ok {
			continue // refused by the catalog's validation
		}
		gone, err := r.RemovedBy(k8s)
		if err != nil {
			return nil, err
		}
		if gone {
			out = append(out, r)
		}
	}
	return out, nil
}

// SkipReason is why a cell of this version cannot run on Kubernetes k8s,
// "" when nothing known stops it: "calico v3.1.7 cannot run on Kubernetes
// v1.37.2: its manifest uses extensions/v1beta1 DaemonSet (removed in
// v1.16), ...; tested on v1.8-v1.10".
func (v *CNIVersion) SkipReason(cni, k8s string) (string, error) {
	rs, err := v.CannotRunOn(k8s)
	if err != nil || len(rs) == 0 {
		return "", err
	}
	var uses []string
	for _, r := range rs {
		uses = append(uses, r.Reason())
	}
	s := fmt.Sprintf("%s %s cannot run on Kubernetes %s: its manifest uses %s", cni, v.Version, k8s, strings.Join(uses, ", "))
	if v.Tested != "" {
		s += "; tested on " + v.Tested
	}
	return s, nil
}

// Load parses the embedded catalog.
func Load() (*Catalog, error) {
	var c Catalog
	dec := yaml.NewDecoder(strings.NewReader(string(catalogYAML)))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("catalog.yaml: %w", err)
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("catalog.yaml: %w", err)
	}
	cal, err := LoadCalico()
	if err != nil {
		return nil, err
	}
	c.addCalico(cal)
	return &c, nil
}

func (c *Catalog) validate() error {
	seen := map[string]bool{}
	defaults := 0
	for _, k := range c.Kubernetes {
		if !strings.HasPrefix(k.Version, "v") || strings.Count(k.Version, ".") != 2 {
			return fmt.Errorf("kubernetes version %q: want vMAJOR.MINOR.PATCH", k.Version)
		}
		if seen[k.Version] {
			return fmt.Errorf("kubernetes version %s listed twice", k.Version)
		}
		seen[k.Version] = true
		if k.Default {
			defaults++
		}
	}
	if defaults != 1 {
		return fmt.Errorf("want exactly one default kubernetes version, have %d", defaults)
	}
	for _, n := range c.CNIs {
		if n.Name == "" || n.Namespace == "" || n.Selector == "" {
			return fmt.Errorf("cni %q: name, namespace and selector are required", n.Name)
		}
		for _, v := range n.Versions {
			if v.Version == "" || (v.Manifest == "") == (len(v.Remote) == 0) {
				return fmt.Errorf("cni %s: every version needs version and manifest (or remote files, not both)", n.Name)
			}
		}
	}
	return nil
}

// DefaultKubernetes is the default Kubernetes version.
func (c *Catalog) DefaultKubernetes() string {
	for _, k := range c.Kubernetes {
		if k.Default {
			return k.Version
		}
	}
	return ""
}

// HasKubernetes reports whether v is a known Kubernetes version.
func (c *Catalog) HasKubernetes(v string) bool {
	for _, k := range c.Kubernetes {
		if k.Version == v {
			return true
		}
	}
	return false
}

// KubernetesVersions lists the known Kubernetes versions.
func (c *Catalog) KubernetesVersions() []string {
	var out []string
	for _, k := range c.Kubernetes {
		out = append(out, k.Version)
	}
	sort.Strings(out)
	return out
}

// CNI returns the CNI named name.
func (c *Catalog) CNI(name string) (*CNI, bool) {
	for i := range c.CNIs {
		if c.CNIs[i].Name == name {
			return &c.CNIs[i], true
		}
	}
	return nil, false
}

// CNINames lists the known CNIs.
func (c *Catalog) CNINames() []string {
	var out []string
	for _, n := range c.CNIs {
		out = append(out, n.Name)
	}
	return out
}

// Version returns version v of the CNI.
func (n *CNI) Version(v string) (*CNIVersion, bool) {
	for i := range n.Versions {
		if n.Versions[i].Version == v {
			return &n.Versions[i], true
		}
	}
	return nil, false
}

// VersionNames lists the CNI's known versions.
func (n *CNI) VersionNames() []string {
	var out []string
	for _, v := range n.Versions {
		out = append(out, v.Version)
	}
	return out
}
