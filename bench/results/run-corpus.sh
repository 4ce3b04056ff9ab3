#!/bin/bash
# The whole corpus under Node.js 24 (the target; every Slipway tree runs on the Node that runs
# the bench): this tree standalone and through its resident engine, MAIN (another tree, such as
# main when a session began) both ways, BEFORE (the performance issue's 5b1a9d9; standalone only)
# and the peers (Docker legacy, BuildKit, buildah), interleaved in one run. Run from a
# `git archive` of this tree built with `npm run build`; BEFORE and MAIN are such trees too.
# Writes bench/results/build-bench-$D.txt and its log. Usage:
#   D=<name> MAIN=<tree>/dist/src/cli/main.js [BEFORE=…] [NODE=…] bash bench/results/run-corpus.sh
cd "$(dirname "$0")/../.."
: "${D:?set D, the name of the run}" "${MAIN:?set MAIN, the main.js of the other tree}"
R=bench/results
NODE=${NODE:-$(npx -y -p node@24.21.0 -c 'command -v node')}
BEFORE=${BEFORE:-/work/wt/before/dist/src/cli/main.js}
CMD="$NODE dist/bench/build-bench.js --engine --baseline-cli $BEFORE --main-cli $MAIN"
{ echo "# start: $(date -u +%H:%M:%S) $(uptime)"; echo "# node: $($NODE --version)"; echo "# command: $CMD"; } > $R/build-bench-$D.log.txt
$CMD > $R/build-bench-$D.txt 2>> $R/build-bench-$D.log.txt
echo "# exit $?" >> $R/build-bench-$D.log.txt
echo "# end: $(date -u +%H:%M:%S) $(uptime)" >> $R/build-bench-$D.log.txt
