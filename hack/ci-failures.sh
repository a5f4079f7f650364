#!/usr/bin/env bash
# ci-failures.sh LOG: the failures of a `make test` log, briefly: each failed
# Go test with its first messages, each failed Ginkgo spec with its failure
# message (for a cell: outcome, root cause and reason, as the spec asserted).
set -uo pipefail
log=${1:?usage: ci-failures.sh LOG}
plain() { sed 's/\x1b\[[0-9;]*m//g' "$log"; }
# Go tests: "--- FAIL: Name" and the indented lines that follow it.
plain | awk '/^ *--- FAIL: /{n=6; print; next} n>0 && /^ +/{print substr($0,1,300); n--; next} {n=0}' | grep -v 'FAIL: TestE2E ' | head -60
# Ginkgo: the "[FAILED]" message lines of each failed spec (deduplicated).
plain | grep -A3 '^ *\[FAILED\]' | grep -v '^--$' | cut -c1-400 | awk '!seen[$0]++' | head -40
