#!/bin/bash
# The whole corpus on an idle machine (2026-12-05, second session), under Node.js 24 (the target; every Slipway
# tree runs on the Node that runs the bench): this tree standalone and through its resident
# engine, main when the session began (769e58a) both ways, the tree at 5b1a9d9 (the performance
# issue's reference; standalone only) and the peers (Docker legacy, BuildKit, buildah),
# interleaved in one run. Run from a `git archive` of this tree built with `npm run build`;
# BEFORE and MAIN are such trees too.
cd "$(dirname "$0")/../.."
D=${D:-2026-12-05b}
R=bench/results
NODE=${NODE:-$(npx -y -p node@24.21.0 -c 'command -v node')}
BEFORE=${BEFORE:-/work/wt/before/dist/src/cli/main.js}
MAIN=${MAIN:-/work/wt/s6/dist/src/cli/main.js}
CMD="$NODE dist/bench/build-bench.js --engine --baseline-cli $BEFORE --main-cli $MAIN"
{ echo "# start: $(date -u +%H:%M:%S) $(uptime)"; echo "# node: $($NODE --version)"; echo "# command: $CMD"; } > $R/build-bench-$D.log.txt
$CMD > $R/build-bench-$D.txt 2>> $R/build-bench-$D.log.txt
echo "# exit $?" >> $R/build-bench-$D.log.txt
echo "# end: $(date -u +%H:%M:%S) $(uptime)" >> $R/build-bench-$D.log.txt
