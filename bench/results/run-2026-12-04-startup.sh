#!/bin/bash
# The start-up run (branch startup): warm and touched rows of seed, many-steps and big-context,
# this tree standalone and through its resident engine, main's CLI both ways, the tree at
# 5b1a9d9 (standalone only: it has no resident engine) and the peers, interleaved in one run.
# MAIN is main at 6ed073c, unpacked with `git archive main` and built (npm ci && npm run build).
cd "$(dirname "$0")/../.."
D=2026-12-04-startup
R=bench/results
BEFORE=/work/wt/before/dist/src/cli/main.js
MAIN=${MAIN:-/tmp/su/main-tree/dist/src/cli/main.js}
CMD="node dist/bench/build-bench.js --only ^(seed|many-steps|big-context)\$ --modes warm,touched --engine --baseline-cli $BEFORE --main-cli $MAIN"
{ echo "# start: $(date -u +%H:%M:%S) $(uptime)"; echo "# command: $CMD"; } > $R/build-bench-$D.log
$CMD > $R/build-bench-$D.txt 2>> $R/build-bench-$D.log
echo "# exit $?" >> $R/build-bench-$D.log
echo "# end: $(date -u +%H:%M:%S) $(uptime)" >> $R/build-bench-$D.log
