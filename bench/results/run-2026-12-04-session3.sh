#!/bin/bash
cd /tmp/bench-now
D=2026-12-04-session3
OUT=/tmp/bench-out
mkdir -p $OUT
BEFORE=/work/wt/before/dist/src/cli/main.js
MAIN=/tmp/sc-old/dist/src/cli/main.js
CMD="node dist/bench/build-bench.js --engine --baseline-cli $BEFORE --main-cli $MAIN"
{ echo "# start: $(date -u +%H:%M:%S) $(uptime)"; echo "# command: $CMD"; echo "# slipway = main at $(cd /work/main && git rev-parse --short HEAD); slipway-main = 41a5399 (main when this session began, plus the Sentinel fix); slipway-before = 5b1a9d9"; } > $OUT/build-bench-$D.log
$CMD > $OUT/build-bench-$D.txt 2>> $OUT/build-bench-$D.log
echo "# exit $?" >> $OUT/build-bench-$D.log
echo "# end: $(date -u +%H:%M:%S) $(uptime)" >> $OUT/build-bench-$D.log
