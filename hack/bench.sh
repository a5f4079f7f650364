#!/usr/bin/env bash
# make bench: one mixed-arch cell (amd64 kind control plane + arm64 QEMU VM
# worker, flannel) run by the harness, then the same steps by hand
# (hack/bench-by-hand.sh); prints both sets of per-phase times and the ratio.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-_out/bench}
mkdir -p "$OUT"


echo "== harness: bin/cnimatrix run scenarios/offline-flannel-arm64.yaml"
bin/cnimatrix images build --qemu >/dev/null 2>&1 # warm, untimed (as for the hand run)
bin/cnimatrix run scenarios/offline-flannel-arm64.yaml --out "$OUT/harness" --artifacts "$OUT/harness/artifacts" 2>"$OUT/harness.log" || true
M=$OUT/harness/matrix.json
jq -e '.results[0].outcome == "pass"' "$M" >/dev/null || { echo "harness cell did not pass:"; jq -r '.results[0] | "\(.outcome) \(.reason)"' "$M"; exit 1; }
phase() { jq -r --arg n "$1" '[.results[0].phases[] | select(.name == $n) | .durationMs] | add // 0 | . / 1000' "$M"; }
mark() { jq -r --arg e "$1" '.results[0].phases[] | select(.name == "cluster") | .evidence[] | select(.detail | startswith($e + " at +")) | .detail | capture("\\+(?<s>[0-9.]+)s").s' "$M" | head -1; }
h_vm=$(mark agent-up)
h_join=$(mark joined)
h_ready=$(jq -r '.results[0].phases[] | select(.name == "cni-ready") | .evidence[]? | select(.detail | test("Ready [0-9]+s after")) | .detail | capture("Ready (?<s>[0-9]+)s").s' "$M" | head -1)
h_cni=$(phase cni-ready)
h_checks=$(jq -r '[.results[0].phases[] | select(.name | startswith("check:")) | .durationMs] | add / 1000' "$M")
h_total=$(jq -r '[.results[0].phases[] | select(.name == "cluster" or .name == "kernel-facts" or .name == "cni-install" or .name == "cni-ready" or (.name | startswith("check:"))) | .durationMs] | add / 1000' "$M")

echo "== by hand: hack/bench-by-hand.sh"
bash hack/bench-by-hand.sh 2>"$OUT/hand.log" | tee "$OUT/hand.out"
hand() { sed -n "s/^bench-by-hand: $1 //p" "$OUT/hand.out"; }

printf '\n%-34s %10s %10s\n' "phase (seconds)" harness "by hand"
printf '%-34s %10.1f %10.1f\n' "VM start -> agent answers" "$h_vm" "$(hand vm-up)"
printf '%-34s %10.1f %10.1f\n' "VM start -> kubeadm join done" "$h_join" "$(hand joined)"
printf '%-34s %10.1f %10.1f\n' "VM start -> node Ready" "$h_ready" "$(hand node-ready)"
printf '%-34s %10.1f %10.1f\n' "CNI applied -> DaemonSet ready" "$h_cni" "$(hand cni-ready)"
printf '%-34s %10.1f %10.1f\n' "checks" "$h_checks" "$(hand checks)"
printf '%-34s %10.1f %10.1f\n' "total (cluster, kernel, CNI, checks)" "$h_total" "$(hand total)"
printf 'ratio harness / by hand: %.2f\n' "$(echo "$h_total / $(hand total)" | bc -l)"
