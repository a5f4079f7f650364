#!/usr/bin/env bash
# make bench-parallel: the four cells of hack/bench-parallel.yaml with
# --parallel 1, 2 and auto, each a fresh run on a warm cache; writes
# $OUT/parallel.json (wall seconds, peak RSS of cnimatrix and of the whole
# machine's memory in use, each cell's outcome and root cause) and prints a
# table. Verdicts must not depend on parallelism: the script fails if any
# cell's outcome or root cause differs between the runs.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-_out/bench-parallel}
BIN=${BIN:-bin/cnimatrix}
MODES=${MODES:-1 2 auto}
mkdir -p "$OUT"
"$BIN" images build --qemu >/dev/null 2>&1 # warm, untimed
runs=()
for p in $MODES; do
	echo "== --parallel $p"
	dir=$OUT/p$p
	rm -rf "$dir"
	used_peak=0
	# Memory in use on the machine, sampled every second: the clusters and
	# VMs are other processes than cnimatrix.
	( while sleep 1; do awk '/MemTotal/{t=$2} /MemAvailable/{a=$2} END{print (t-a)/1024}' /proc/meminfo; done ) > "$dir.mem" 2>/dev/null &
	sampler=$!
	start=$(date +%s.%N)
	/usr/bin/time -f '%M' -o "$dir.rss" "$BIN" run hack/bench-parallel.yaml --parallel "$p" --out "$dir" 2>"$dir.log" || true
	end=$(date +%s.%N)
	kill "$sampler" 2>/dev/null || true
	used_peak=$(sort -n "$dir.mem" | tail -1)
	wall=$(echo "$end - $start" | bc -l)
	jq -n --arg p "$p" --argjson wall "$wall" --argjson rss "$(tail -1 "$dir.rss")" --argjson used "${used_peak:-0}" \
		--slurpfile m "$dir/matrix.json" \
		'{parallel: $p, wallSeconds: $wall, cnimatrixMaxRSSKB: $rss, machineMemUsedPeakMB: $used,
		  cells: [$m[0].results[] | {id, outcome, rootCause, seconds: (.durationMs / 1000)}]}' > "$dir.json"
	runs+=("$dir.json")
done
jq -s '.' "${runs[@]}" > "$OUT/parallel.json"
printf '\n%-10s %10s %14s %16s\n' parallel "wall (s)" "cnimatrix RSS" "machine mem peak"
jq -r '.[] | [.parallel, (.wallSeconds|floor), "\(.cnimatrixMaxRSSKB/1024|floor) MB", "\(.machineMemUsedPeakMB|floor) MB"] | @tsv' "$OUT/parallel.json" |
	awk -F'\t' '{printf "%-10s %10s %14s %16s\n", $1, $2, $3, $4}'
echo
jq -r '.[] | .parallel as $p | .cells[] | "\($p)\t\(.id)\t\(.outcome) \(.rootCause // "")\t\(.seconds|floor)s"' "$OUT/parallel.json" | column -t -s$'\t'
# Verdicts must be the same whatever the parallelism.
n=$(jq '[.[] | [.cells[] | "\(.id) \(.outcome) \(.rootCause // "")"] | sort] | unique | length' "$OUT/parallel.json")
if [ "$n" != 1 ]; then
	echo "verdicts differ between the runs (see $OUT/parallel.json)" >&2
	exit 1
fi
echo "verdicts identical across --parallel $MODES; $OUT/parallel.json"
