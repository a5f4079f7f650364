// Package apicompat knows which Kubernetes API versions were removed, and in
// which release, so a manifest can be checked against a Kubernetes version
// before any cluster exists: Calico v3.1's calico.yaml is an
// extensions/v1beta1 DaemonSet, which no API server serves since v1.16.
//
// The table follows the Kubernetes deprecated API migration guide
// (kubernetes.io/docs/reference/using-api/deprecation-guide): only APIs that
// were served as beta or GA and then removed; alpha APIs are not listed.
package apicompat

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// API is a group/version and kind, as a manifest object names them.
type API struct {
	APIVersion string `yaml:"apiVersion" json:"apiVersion"`
	Kind       string `yaml:"kind" json:"kind"`
}

func (a API) String() string { return a.APIVersion + " " + a.Kind }

// Removal is an API and the Kubernetes minor whose API server no longer
// serves it.
type Removal struct {
	API
	// Removed is the minor, as "v1.16".
	Removed string
	// Use is the API version that replaces it; "" when none does
	// (PodSecurityPolicy).
	Use string
}

// Reason is "extensions/v1beta1 DaemonSet (removed in v1.16)".
func (r Removal) Reason() string { return fmt.Sprintf("%s (removed in %s)", r.API, r.Removed) }

// removals by minor; a kind of "" stands for every kind of that
// group/version not listed, for group/versions removed as a whole.
var removals = map[string][]API{
	"v1.16": {
		{"extensions/v1beta1", "DaemonSet"}, {"extensions/v1beta1", "Deployment"},
		{"extensions/v1beta1", "ReplicaSet"}, {"extensions/v1beta1", "NetworkPolicy"},
		{"extensions/v1beta1", "PodSecurityPolicy"},
		{"apps/v1beta1", "Deployment"}, {"apps/v1beta1", "StatefulSet"}, {"apps/v1beta1", "ControllerRevision"},
		{"apps/v1beta1", ""},
		{"apps/v1beta2", "DaemonSet"}, {"apps/v1beta2", "Deployment"}, {"apps/v1beta2", "ReplicaSet"},
		{"apps/v1beta2", "StatefulSet"}, {"apps/v1beta2", "ControllerRevision"},
		{"apps/v1beta2", ""},
	},
	"v1.22": {
		{"extensions/v1beta1", "Ingress"}, {"extensions/v1beta1", ""},
		{"networking.k8s.io/v1beta1", "Ingress"}, {"networking.k8s.io/v1beta1", "IngressClass"},
		{"apiextensions.k8s.io/v1beta1", "CustomResourceDefinition"}, {"apiextensions.k8s.io/v1beta1", ""},
		{"admissionregistration.k8s.io/v1beta1", "MutatingWebhookConfiguration"},
		{"admissionregistration.k8s.io/v1beta1", "ValidatingWebhookConfiguration"},
		{"admissionregistration.k8s.io/v1beta1", ""},
		{"apiregistration.k8s.io/v1beta1", "APIService"}, {"apiregistration.k8s.io/v1beta1", ""},
		{"authentication.k8s.io/v1beta1", "TokenReview"},
		{"authorization.k8s.io/v1beta1", "SubjectAccessReview"},
		{"authorization.k8s.io/v1beta1", "LocalSubjectAccessReview"},
		{"authorization.k8s.io/v1beta1", "SelfSubjectAccessReview"},
		{"authorization.k8s.io/v1beta1", "SelfSubjectRulesReview"},
		{"certificates.k8s.io/v1beta1", "CertificateSigningRequest"},
		{"coordination.k8s.io/v1beta1", "Lease"},
		{"rbac.authorization.k8s.io/v1beta1", "ClusterRole"}, {"rbac.authorization.k8s.io/v1beta1", "ClusterRoleBinding"},
		{"rbac.authorization.k8s.io/v1beta1", "Role"}, {"rbac.authorization.k8s.io/v1beta1", "RoleBinding"},
		{"rbac.authorization.k8s.io/v1beta1", ""},
		{"scheduling.k8s.io/v1beta1", "PriorityClass"},
		{"storage.k8s.io/v1beta1", "CSIDriver"}, {"storage.k8s.io/v1beta1", "CSINode"},
		{"storage.k8s.io/v1beta1", "StorageClass"}, {"storage.k8s.io/v1beta1", "VolumeAttachment"},
	},
	"v1.25": {
		{"batch/v1beta1", "CronJob"},
		{"discovery.k8s.io/v1beta1", "EndpointSlice"},
		{"events.k8s.io/v1beta1", "Event"},
		{"autoscaling/v2beta1", "HorizontalPodAutoscaler"},
		{"policy/v1beta1", "PodDisruptionBudget"}, {"policy/v1beta1", "PodSecurityPolicy"}, {"policy/v1beta1", ""},
		{"node.k8s.io/v1beta1", "RuntimeClass"},
	},
	"v1.26": {
		{"flowcontrol.apiserver.k8s.io/v1beta1", "FlowSchema"},
		{"flowcontrol.apiserver.k8s.io/v1beta1", "PriorityLevelConfiguration"},
		{"autoscaling/v2beta2", "HorizontalPodAutoscaler"},
	},
	"v1.27": {
		{"storage.k8s.io/v1beta1", "CSIStorageCapacity"},
	},
	"v1.29": {
		{"flowcontrol.apiserver.k8s.io/v1beta2", "FlowSchema"},
		{"flowcontrol.apiserver.k8s.io/v1beta2", "PriorityLevelConfiguration"},
	},
	"v1.32": {
		{"flowcontrol.apiserver.k8s.io/v1beta3", "FlowSchema"},
		{"flowcontrol.apiserver.k8s.io/v1beta3", "PriorityLevelConfiguration"},
	},
}

// replacements: the API version to move to, by removed group/version and
// kind; a kind that is not here keeps its group at v1.
var replacements = map[API]string{
	{"extensions/v1beta1", "DaemonSet"}:                                    "apps/v1",
	{"extensions/v1beta1", "Deployment"}:                                   "apps/v1",
	{"extensions/v1beta1", "ReplicaSet"}:                                   "apps/v1",
	{"extensions/v1beta1", "NetworkPolicy"}:                                "networking.k8s.io/v1",
	{"extensions/v1beta1", "PodSecurityPolicy"}:                            "", // policy/v1beta1 until v1.25, then none
	{"extensions/v1beta1", "Ingress"}:                                      "networking.k8s.io/v1",
	{"apps/v1beta1", "Deployment"}:                                         "apps/v1",
	{"apps/v1beta1", "StatefulSet"}:                                        "apps/v1",
	{"apps/v1beta1", "ControllerRevision"}:                                 "apps/v1",
	{"events.k8s.io/v1beta1", "Event"}:                                     "events.k8s.io/v1",
	{"autoscaling/v2beta1", "HorizontalPodAutoscaler"}:                     "autoscaling/v2",
	{"autoscaling/v2beta2", "HorizontalPodAutoscaler"}:                     "autoscaling/v2",
	{"policy/v1beta1", "PodSecurityPolicy"}:                                "", // removed without a successor: Pod Security Admission
	{"flowcontrol.apiserver.k8s.io/v1beta1", "FlowSchema"}:                 "flowcontrol.apiserver.k8s.io/v1",
	{"flowcontrol.apiserver.k8s.io/v1beta1", "PriorityLevelConfiguration"}: "flowcontrol.apiserver.k8s.io/v1",
	{"flowcontrol.apiserver.k8s.io/v1beta2", "FlowSchema"}:                 "flowcontrol.apiserver.k8s.io/v1",
	{"flowcontrol.apiserver.k8s.io/v1beta2", "PriorityLevelConfiguration"}: "flowcontrol.apiserver.k8s.io/v1",
	{"flowcontrol.apiserver.k8s.io/v1beta3", "FlowSchema"}:                 "flowcontrol.apiserver.k8s.io/v1",
	{"flowcontrol.apiserver.k8s.io/v1beta3", "PriorityLevelConfiguration"}: "flowcontrol.apiserver.k8s.io/v1",
}

var index = func() map[API]string {
	m := map[API]string{}
	for minor, list := range removals {
		for _, a := range list {
			if prev, dup := m[a]; dup {
				panic(fmt.Sprintf("apicompat: %s listed in %s and %s", a, prev, minor))
			}
			m[a] = minor
		}
	}
	return m
}()

// Lookup returns the removal of apiVersion/kind, if that API was removed.
// A kind the table does not name is found through its group/version when
// the whole group/version was removed.
func Lookup(apiVersion, kind string) (Removal, bool) {
	a := API{apiVersion, kind}
	minor, listed := index[a]
	ok := listed
	if !ok {
		minor, ok = index[API{apiVersion, ""}]
	}
	if !ok {
		return Removal{}, false
	}
	use, named := replacements[a]
	if !named && listed && kind != "" {
		// Every other removed beta moved to v1 of its own group.
		if g, _, found := strings.Cut(apiVersion, "/"); found {
			use = g + "/v1"
		} else {
			use = "v1"
		}
	}
	return Removal{API: a, Removed: minor, Use: use}, true
}

var versionRE = regexp.MustCompile(`^v?1\.(\d+)(\.\d+)?([-+].*)?$`)

// Minor reads the minor of a Kubernetes version: "v1.37.2" and "v1.37" are 37.
func Minor(k8s string) (int, error) {
	m := versionRE.FindStringSubmatch(k8s)
	if m == nil {
		return 0, fmt.Errorf("version %q: want a Kubernetes version like v1.MINOR[.PATCH]", k8s)
	}
	return strconv.Atoi(m[1])
}

// RemovedBy reports whether the removal applies to Kubernetes k8s (a version
// like v1.37.2 or a minor like v1.37).
func (r Removal) RemovedBy(k8s string) (bool, error) {
	have, err := Minor(k8s)
	if err != nil {
		return false, err
	}
	gone, _ := Minor(r.Removed)
	return have >= gone, nil
}

// Problem is an object of a manifest that a Kubernetes version cannot accept.
type Problem struct {
	// Object is "DaemonSet kube-system/calico-node".
	Object string
	Removal
}

// String is "extensions/v1beta1 DaemonSet kube-system/calico-node: removed
// in Kubernetes v1.16 (use apps/v1)".
func (p Problem) String() string {
	s := fmt.Sprintf("%s %s: removed in Kubernetes %s", p.APIVersion, p.Object, p.Removed)
	switch {
	case p.Use != "":
		s += " (use " + p.Use + ")"
	case p.Kind == "PodSecurityPolicy":
		s += " (no successor: Pod Security Admission replaces it)"
	}
	return s
}

// Check returns the objects a Kubernetes k8s API server would refuse
// because their API version is no longer served, in manifest order.
func Check(objs []*unstructured.Unstructured, k8s string) ([]Problem, error) {
	if _, err := Minor(k8s); err != nil {
		return nil, err
	}
	var out []Problem
	for _, o := range objs {
		r, ok := Lookup(o.GetAPIVersion(), o.GetKind())
		if !ok {
			continue
		}
		if gone, _ := r.RemovedBy(k8s); gone {
			out = append(out, Problem{Object: objectName(o), Removal: r})
		}
	}
	return out, nil
}

// Used returns the removed APIs the objects use, whatever the Kubernetes
// version, sorted and without repeats: what a catalog entry declares as its
// manifest's removedAPIs.
func Used(objs []*unstructured.Unstructured) []API {
	seen := map[API]bool{}
	var out []API
	for _, o := range objs {
		a := API{o.GetAPIVersion(), o.GetKind()}
		if _, ok := Lookup(a.APIVersion, a.Kind); ok && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	Sort(out)
	return out
}

// Sort orders APIs by API version, then kind.
func Sort(apis []API) {
	sort.Slice(apis, func(i, j int) bool {
		if apis[i].APIVersion != apis[j].APIVersion {
			return apis[i].APIVersion < apis[j].APIVersion
		}
		return apis[i].Kind < apis[j].Kind
	})
}

// Diff compares the removed APIs a manifest uses (got) with those declared
// for it (want): "" when they agree, else what differs.
func Diff(got, want []API) string {
	var extra, missing []string
	for _, a := range got {
		if !slices.Contains(want, a) {
			r, _ := Lookup(a.APIVersion, a.Kind)
			extra = append(extra, r.Reason())
		}
	}
	for _, a := range want {
		if !slices.Contains(got, a) {
			missing = append(missing, a.String())
		}
	}
	return DescribeDiff(extra, missing)
}

// DescribeDiff words how what a manifest uses differs from what is declared
// for it: extra is used but not declared, missing declared but not used;
// "" when both are empty.
func DescribeDiff(extra, missing []string) string {
	var parts []string
	if len(extra) > 0 {
		parts = append(parts, "manifest also uses "+strings.Join(extra, ", "))
	}
	if len(missing) > 0 {
		parts = append(parts, "manifest does not use "+strings.Join(missing, ", "))
	}
	return strings.Join(parts, "; ")
}

func objectName(o *unstructured.Unstructured) string {
	n := o.GetName()
	if ns := o.GetNamespace(); ns != "" {
		n = ns + "/" + n
	}
	return o.GetKind() + " " + n
}
