package scenario

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/cnimatrix/cnimatrix/internal/calico"
	"github.com/cnimatrix/cnimatrix/internal/calicodata"
	"github.com/cnimatrix/cnimatrix/internal/catalog"
	"github.com/cnimatrix/cnimatrix/internal/install"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

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

// cniResult is what the other sections need of the CNI's: whether the
// install is the operator's.
type cniResult struct{ operator bool }

// cniSources is where a scenario's versions' manifests come from before
// the catalog: cni.manifests per version, else cni.manifest for all.
type cniSources struct {
	perVersion map[string]string
	override   string
}

// cni parses the cni section (and the upgrade block, which names its
// versions): the CNI, its versions and the manifest of each (a local file,
// the catalog's, or a downloaded one from the cache, pinned), the cells
// its Kubernetes versions cannot run, namespace, selector and image
// overrides.
func (v *validator) cni(raw *rawScenario, s *Scenario, cat *catalog.Catalog, repoRoot string) cniResult {
	cni, ok := cat.CNI(raw.CNI.Name.V)
	switch {
	case raw.CNI.Name.V == "":
		v.add(0, "cni.name is required (known: %s)", strings.Join(cat.CNINames(), ", "))
	case !ok:
		v.add(raw.CNI.Name.Line, "unknown CNI %q (known: %s)", raw.CNI.Name.V, strings.Join(cat.CNINames(), ", "))
	}
	s.CNI = CNISpec{Name: raw.CNI.Name.V, Manifests: map[string]string{}}
	s.skips = map[string]*Skip{}
	if len(raw.CNI.Versions) == 0 {
		v.add(0, "cni.versions: list at least one version")
	}
	src := v.manifestSources(raw)
	// The install method decides which of a catalog version's files it
	// needs: calico.yaml, or the operator's.
	operator := v.operatorInstall(raw.CNI.Calico)
	// The Kubernetes versions, read before the CNI versions so that a
	// version none of them can run is known without its manifest; they are
	// validated by their own section.
	k8sVersions := []string{cat.DefaultKubernetes()}
	if len(raw.Kubernetes) > 0 {
		k8sVersions = nil
		for _, k := range raw.Kubernetes {
			k8sVersions = append(k8sVersions, k.V)
		}
	}
	for _, ver := range raw.CNI.Versions {
		if ok {
			v.versionManifest(s, cni, ver, src, k8sVersions, operator, repoRoot)
		}
		s.CNI.Versions = append(s.CNI.Versions, ver.V)
	}
	if raw.Upgrade != nil {
		s.Upgrade = v.upgrade(raw.Upgrade.To, raw.Upgrade.ProbeInterval, raw.Upgrade.MaxFailedProbes, s.CNI.Versions, src.perVersion[raw.Upgrade.To.V], src.override, cni, ok, operator, repoRoot)
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
	v.imageOverrides(raw, s)
	return cniResult{operator: operator}
}

// manifestSources reads cni.manifest and cni.manifests (paths relative to
// the scenario file); each must be a readable file, and each version of
// cni.manifests one of cni.versions or upgrade.to.
func (v *validator) manifestSources(raw *rawScenario) cniSources {
	src := cniSources{perVersion: map[string]string{}}
	if raw.CNI.Manifest.V != "" {
		src.override = raw.CNI.Manifest.V
		if !filepath.IsAbs(src.override) {
			src.override = filepath.Join(filepath.Dir(v.path), src.override)
		}
		if fi, err := os.Stat(src.override); err != nil {
			v.add(raw.CNI.Manifest.Line, "cni.manifest %s: %v", raw.CNI.Manifest.V, errors.Unwrap(err))
		} else if fi.IsDir() {
			v.add(raw.CNI.Manifest.Line, "cni.manifest %s: is a directory, not a manifest file", raw.CNI.Manifest.V)
		}
	}
	for ver, file := range raw.CNI.Manifests {
		p := file.V
		if p != "" && !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(v.path), p)
		}
		if fi, err := os.Stat(p); p == "" || err != nil || fi.IsDir() {
			v.add(file.Line, "cni.manifests: %s: %q is not a readable file", ver, file.V)
			continue
		}
		isTo := raw.Upgrade != nil && raw.Upgrade.To.V == ver
		if !isTo && !slices.ContainsFunc(raw.CNI.Versions, func(s str) bool { return s.V == ver }) {
			v.add(file.Line, "cni.manifests: %q is not one of cni.versions (nor upgrade.to)", ver)
		}
		src.perVersion[ver] = p
	}
	return src
}

// operatorInstall reads cni.calico.install: manifest (the default) or
// operator.
func (v *validator) operatorInstall(c *rawCalico) bool {
	if c == nil {
		return false
	}
	switch c.Install.V {
	case "", calico.InstallManifest:
	case calico.InstallOperator:
		return true
	default:
		v.add(c.Install.Line, "cni.calico.install %q: want %s or %s", c.Install.V, calico.InstallManifest, calico.InstallOperator)
	}
	return false
}

// versionManifest resolves the manifest of version ver: the scenario's
// own file, else the catalog's (a file of the repository, or a downloaded
// one from the cache, pinned), and records the cells of it that its
// Kubernetes versions cannot run. A version none of them can run needs no
// manifest.
func (v *validator) versionManifest(s *Scenario, cni *catalog.CNI, ver str, src cniSources, k8sVersions []string, operator bool, repoRoot string) {
	cv, known := cni.Version(ver.V)
	skipped := 0
	if known && src.perVersion[ver.V] == "" && src.override == "" {
		skipped = s.addSkips(cni.Name, cv, k8sVersions)
	}
	switch {
	case src.perVersion[ver.V] != "":
		s.CNI.Manifests[ver.V] = src.perVersion[ver.V]
	case src.override != "":
		s.CNI.Manifests[ver.V] = src.override
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

// imageOverrides reads cni.imageOverrides.
func (v *validator) imageOverrides(raw *rawScenario, s *Scenario) {
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

// calico parses cni.calico: the edits of calico.yaml (or the operator's
// Installation) and where the images come from.
func (v *validator) calico(raw *rawScenario, s *Scenario, operator bool, repoRoot string) {
	// Without a cni.calico block a Calico cell still gets the pool of its
	// cluster's podSubnet: calico.yaml's own default (192.168.0.0/16) is
	// not the cluster's, and pods would get addresses kube-proxy and the
	// nodes' routes do not know.
	if c := raw.CNI.Calico; c != nil || s.CNI.Name == "calico" {
		if c == nil {
			c = &rawCalico{}
		}
		s.CNI.Calico = v.calicoOptions(c, s, operator)
	}
	if s.CNI.Name == "calico" {
		v.calicoImages(raw.CNI.Calico, s, repoRoot)
	}
}

// calicoOptions reads cni.calico and tries the edits on every manifest the
// scenario applies, so that an option a version's manifest cannot take
// (VXLAN on v3.2, an MTU of "auto" before v3.19) is an error of the
// scenario file, before any cluster exists.
func (v *validator) calicoOptions(c *rawCalico, s *Scenario, operator bool) *calico.Options {
	o := &calico.Options{PodCIDR: s.PodSubnet, Install: calico.InstallManifest}
	if operator {
		o.Install = calico.InstallOperator
	}
	if s.CNI.Name != "calico" {
		v.add(c.line(), "cni.calico: only for cni.name calico, not %q", s.CNI.Name)
		return o
	}
	before := len(v.errs)
	if c.Encapsulation.V != "" {
		e, err := calico.ParseEncapsulation(c.Encapsulation.V)
		if err != nil {
			v.add(c.Encapsulation.Line, "cni.calico.%v", err)
		}
		o.Encapsulation = e
	}
	if c.MTU.V != "" {
		n, err := strconv.Atoi(c.MTU.V)
		if err != nil || n != 0 && (n < minMTU || n > maxMTU) {
			v.add(c.MTU.Line, "cni.calico.mtu %q: want 0 (auto) or a number from %d to %d", c.MTU.V, minMTU, maxMTU)
		}
		o.MTU = n
	}
	if c.Registry.V != "" {
		r, err := calico.CheckRegistry(c.Registry.V)
		if err != nil {
			v.add(c.Registry.Line, "cni.calico.%v", err)
		}
		o.Registry = r
	}
	if c.ImagePath.V != "" {
		p, err := calico.CheckImagePath(c.ImagePath.V)
		if err != nil {
			v.add(c.ImagePath.Line, "cni.calico.%v", err)
		}
		o.ImagePath = p
	}
	if len(v.errs) > before {
		return o
	}
	for _, path := range s.ManifestPaths() {
		data, err := os.ReadFile(path)
		if err != nil {
			continue // reported where the manifest was resolved
		}
		objs, err := install.ParseManifest(data)
		if err != nil {
			continue // reported where the manifest was resolved
		}
		if _, err := calico.ConfigureFor(deepCopy(objs), *o); err != nil {
			v.add(c.lineOf(objs, *o), "cni.calico: %s: %v", path, err)
		}
	}
	return o
}

// The MTUs a pod interface can have: IPv4's minimum, and a jumbo frame.
const minMTU, maxMTU = 576, 9000

// line is where the cni.calico block's first option is written.
func (c *rawCalico) line() int {
	for _, f := range []str{c.Install, c.Encapsulation, c.MTU, c.Registry, c.ImagePath, c.Images} {
		if f.Line > 0 {
			return f.Line
		}
	}
	return 0
}

// lineOf finds which option the manifest cannot take, by trying each alone
// (the edits of one option do not depend on another's), so that the error
// points at that option's line.
func (c *rawCalico) lineOf(objs []*unstructured.Unstructured, o calico.Options) int {
	base := calico.Options{PodCIDR: o.PodCIDR, Install: o.Install}
	if _, err := calico.ConfigureFor(deepCopy(objs), base); err != nil {
		if c.Install.Line > 0 {
			return c.Install.Line // an install of the other kind
		}
		return c.line()
	}
	for _, try := range []struct {
		line int
		set  func(*calico.Options)
	}{
		{c.Encapsulation.Line, func(x *calico.Options) { x.Encapsulation = o.Encapsulation }},
		{c.MTU.Line, func(x *calico.Options) { x.MTU = o.MTU }},
		{c.Registry.Line, func(x *calico.Options) { x.Registry = o.Registry }},
		{c.ImagePath.Line, func(x *calico.Options) { x.ImagePath = o.ImagePath }},
	} {
		if try.line == 0 {
			continue
		}
		one := base
		try.set(&one)
		if _, err := calico.ConfigureFor(deepCopy(objs), one); err != nil {
			return try.line
		}
	}
	return c.line()
}

func deepCopy(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	out := make([]*unstructured.Unstructured, len(objs))
	for i, o := range objs {
		out[i] = o.DeepCopy()
	}
	return out
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
	ImagePath     str `yaml:"imagePath"`
	// Images: upstream (default) or source.
	Images str `yaml:"images"`
}

// duration reads a positive duration into dst, leaving dst as it is when
// the field is not given.
