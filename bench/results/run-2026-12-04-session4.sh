#!/bin/bash
# The whole corpus on an idle machine (fourth session of 2026-12-04): this tree (the network
# daemon, slipway-netd) standalone and through its resident engine, main when the session began
# (2e412e3: slirp4netns per step) both ways, the tree at 5b1a9d9 (the performance issue's
# reference; standalone only) and the peers (Docker legacy, BuildKit, buildah), interleaved in
# one run. It was run from a `git archive` of main at the netd README commit, built with
# `npm run build`; BEFORE and MAIN are such trees too.
cd "$(dirname "$0")/../.."
D=2026-12-04-session4
R=bench/results
BEFORE=${BEFORE:-/work/wt/before/dist/src/cli/main.js}
MAIN=${MAIN:-/tmp/ci24/dist/src/cli/main.js}
CMD="node dist/bench/build-bench.js --engine --baseline-cli $BEFORE --main-cli $MAIN"
{ echo "# start: $(date -u +%H:%M:%S) $(uptime)"; echo "# command: $CMD"; } > $R/build-bench-$D.log
$CMD > $R/build-bench-$D.txt 2>> $R/build-bench-$D.log
echo "# exit $?" >> $R/build-bench-$D.log
echo "# end: $(date -u +%H:%M:%S) $(uptime)" >> $R/build-bench-$D.log
