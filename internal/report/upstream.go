package report

import (
	"fmt"
	"sync"

	"github.com/cnimatrix/cnimatrix/internal/catalog"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

// Where a cell's Kubernetes sits against the Kubernetes minors its CNI
// release was tested on upstream (the catalog's list).
const (
	RangeInside  = "inside"
	RangeOutside = "outside"
)

// upstream is what the catalog says about a cell's CNI release: the
// Kubernetes range it was tested on, whether the cell is inside it, and
// (for arm64 cells) the release's known arm64 notes and issues. Empty for
// a release the catalog does not describe (flannel, a fixture).
type upstream struct {
	Tested, Range string
	Arm64Notes    []string
}

var loadCalico = sync.OnceValue(func() *catalog.Calico {
	c, err := catalog.LoadCalico()
	if err != nil {
		return nil // the catalog is embedded and tested; a report renders without it
	}
	return c
})

func upstreamOf(c matrix.Cell) upstream {
	cal := loadCalico()
	if c.CNI != "calico" || cal == nil {
		return upstream{}
	}
	v, err := cal.Version(c.CNIVersion)
	if err != nil {
		return upstream{}
	}
	u := upstream{Tested: v.KubernetesRange()}
	if u.Tested != "" {
		u.Range = RangeOutside
		if v.SupportsKubernetes(c.Kubernetes) {
			u.Range = RangeInside
		}
	}
	if c.Arch == "arm64" {
		if v.Arm64 != "" {
			u.Arm64Notes = append(u.Arm64Notes, v.Arm64)
		}
		for _, is := range v.Arm64Issues {
			n := is.Ref + ": " + is.Summary
			if is.FixedIn != "" {
				n += fmt.Sprintf(" (fixed in %s)", is.FixedIn)
			}
			u.Arm64Notes = append(u.Arm64Notes, n)
		}
	}
	return u
}
