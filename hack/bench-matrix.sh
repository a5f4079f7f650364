#!/usr/bin/env bash
# make bench-matrix: a real subset of the Calico matrix, measured, and the
# 54-cell matrix (9 Calico versions x 3 Kubernetes x 2 arches) projected
# from it. Six cells of real Calico v3.32.1 (hack/bench-matrix/*.yaml: three
# installs differing only in their MTU edit, so each arch's three share one
# reused cluster) run per arch, one arch after the other, so an idle VM never
# takes CPU from the other arch's cells. Writes $OUT/matrix-estimate.json
# (per-cell seconds, first cell of a cluster vs a further cell, and the
# projections) and prints a table. The images' cold build is outside the
# cells (it shows in the wall time of the first run on a cold cache).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-_out/bench-matrix}
BIN=${BIN:-bin/cnimatrix}
ARCHES=${ARCHES:-amd64 arm64}
mkdir -p "$OUT"
if [ -z "${CNIMATRIX_MANIFEST_MIRROR:-}" ] && [ -d "$ROOT/../shared/calico/manifests" ]; then
	export CNIMATRIX_MANIFEST_MIRROR="file://$ROOT/../shared/calico/manifests"
fi
"$BIN" catalog fetch v3.32.1 >/dev/null
runs=()
for arch in $ARCHES; do
	echo "== $arch: 3 cells on one reused cluster"
	dir=$OUT/$arch
	rm -rf "$dir"
	start=$(date +%s.%N)
	"$BIN" run hack/bench-matrix/*.yaml --filter "arch=$arch" --out "$dir" 2>"$dir.log" || true
	end=$(date +%s.%N)
	jq -n --arg arch "$arch" --argjson wall "$(echo "$end - $start" | bc -l)" --slurpfile m "$dir/matrix.json" \
		'{arch: $arch, wallSeconds: $wall,
		  cells: [$m[0].results | sort_by(.start)[] | {id, outcome, rootCause,
		    seconds: (.durationMs / 1000),
		    freshCluster: ([.phases[] | select(.name == "cluster") | .evidence[]?.detail // "" | startswith("reused:")] | any | not),
		    uninstalled: ([.phases[] | select(.name == "uninstall")] | length > 0),
		    phases: ([.phases[] | {key: .name, value: (.durationMs / 1000)}] | from_entries)}]}' > "$dir.json"
	runs+=("$dir.json")
done
# Projection: each (Kubernetes, arch) of the 54-cell matrix is one reused
# cluster of 9 cells: the first as measured (cluster, CNI, checks,
# uninstall), 7 as the mean further cell that was uninstalled after, the
# last as the further cell that was not (its cluster is deleted instead).
# One machine runs the 6 clusters one after the other; 8 sharded runners
# keep each cluster whole (one per runner), so the slowest cluster is the
# wall time.
jq -s '{runs: ., projection: (
	[.[] | {arch,
	        fresh: ([.cells[] | select(.freshCluster) | .seconds] | add / length),
	        further: ([.cells[] | select((.freshCluster | not) and .uninstalled) | .seconds] | if length > 0 then add / length else null end),
	        last: ([.cells[] | select((.freshCluster | not) and (.uninstalled | not)) | .seconds] | if length > 0 then add / length else null end),
	        allPassed: ([.cells[] | .outcome == "pass"] | all)}] as $a |
	{perArch: $a,
	 clusterOf9Seconds: ([$a[] | {key: .arch, value: (.fresh + 7 * (.further // .fresh) + (.last // .further // .fresh))}] | from_entries)} |
	.oneMachineSeconds = ([.clusterOf9Seconds[]] | add * 3) |
	.eightShardsSeconds = ([.clusterOf9Seconds[]] | max))}' "${runs[@]}" > "$OUT/matrix-estimate.json"
echo
jq -r '.runs[] | .arch as $a | .cells[] | "\($a)\t\(.id)\t\(.outcome) \(.rootCause // "")\t\(.seconds|floor)s\t\(if .freshCluster then "new cluster" else "reused cluster" end)"' "$OUT/matrix-estimate.json" | column -t -s$'\t'
echo
jq -r '.projection.perArch[] | "\(.arch): first cell of a cluster \(.fresh|floor)s, further cell \((.further // 0)|floor)s (last on its cluster \((.last // 0)|floor)s), all passed: \(.allPassed)"' "$OUT/matrix-estimate.json"
jq -r '.projection | "54 cells (6 clusters of 9): one machine \(.oneMachineSeconds/60|floor) min; 8 shards (one cluster each) \(.eightShardsSeconds/60|floor) min, plus each runner'"'"'s image builds"' "$OUT/matrix-estimate.json"
jq -e '[.runs[].cells[] | .outcome == "pass"] | all' "$OUT/matrix-estimate.json" >/dev/null || { echo "a cell did not pass: the costs are not a passing matrix's (see $OUT/*.log)" >&2; exit 1; }
echo "$OUT/matrix-estimate.json"
