package report

import (
	"slices"

	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

// outcomeOrder is the order outcomes are counted and shown in.
var outcomeOrder = []matrix.Outcome{matrix.Pass, matrix.Fail, matrix.InfraError, matrix.Skipped, matrix.Unknown}

// groupByArch splits results by arch, keeping their order within an arch;
// the arches come arm64 first (the question cnimatrix exists for), then
// the others by name. HTML and Markdown both draw one table per arch.
func groupByArch(results []matrix.Result) (arches []string, byArch map[string][]matrix.Result) {
	byArch = map[string][]matrix.Result{}
	for _, r := range results {
		if byArch[r.Arch] == nil {
			arches = append(arches, r.Arch)
		}
		byArch[r.Arch] = append(byArch[r.Arch], r)
	}
	slices.SortFunc(arches, archLess)
	return arches, byArch
}

func archLess(a, b string) int {
	switch {
	case a == b:
		return 0
	case a == "arm64":
		return -1
	case b == "arm64":
		return 1
	case a < b:
		return -1
	}
	return 1
}
