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
