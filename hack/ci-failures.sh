#!/usr/bin/env bash
# ci-failures.sh LOG: the failures of a `make test` log, briefly: each failed
# Go test with its first messages, each failed Ginkgo spec with its failure
# message (for a cell: outcome, root cause and reason, as the spec asserted).
set -uo pipefail
log=${1:?usage: ci-failures.sh LOG}
plain() { sed 's/\x1b\[[0-9;]*m//g' "$log"; }
# Go tests: "--- FAIL: Name" with the first 2 and the last 6 indented lines
# that follow it (a test's log first, its failed assertions last).
plain | awk '
	function flush() { if (name != "") { print name; for (i = 1; i <= n; i++) if (i <= 2 || i > n - 6) print substr(buf[i], 1, 300); else if (i == 3) print "    ..." } name = ""; n = 0 }
	/^ *--- FAIL: / { flush(); name = $0; next }
	name != "" && /^ +/ { buf[++n] = $0; next }
	{ flush() }
	END { flush() }' | grep -v -- '--- FAIL: TestE2E ' | head -80
# Ginkgo: the "[FAILED]" message lines of each failed spec (deduplicated).
plain | grep -A3 '^ *\[FAILED\]' | grep -v '^--$' | cut -c1-400 | awk '!seen[$0]++' | head -40
