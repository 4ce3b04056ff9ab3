#!/bin/bash
# The real run: sandbox-cost (after, before), build-bench, sandbox-cost --network none (after, before).
cd /work/wt/bench
D=2026-12-04
R=bench/results
BEFORE=/work/wt/before/dist/src/cli/main.js
stamp() { echo "# $1: $(date -u +%H:%M:%S) $(uptime)"; }
sc() { # $1 label, rest args
  local label=$1; shift
  { stamp "start $label"; echo "# command: node dist/bench/sandbox-cost.js $*"; } >> $R/sandbox-cost-$D.log
  node dist/bench/sandbox-cost.js "$@" >> $R/sandbox-cost-$D.txt 2>> $R/sandbox-cost-$D.log
  echo "# exit $?" >> $R/sandbox-cost-$D.log
  stamp "end $label" >> $R/sandbox-cost-$D.log
}
echo "## sandbox-cost after, default network" >> $R/sandbox-cost-$D.txt; sc after-default --steps 100
echo "## sandbox-cost before, default network" >> $R/sandbox-cost-$D.txt; sc before-default --steps 100 --cli $BEFORE
{ stamp "start build-bench"; echo "# command: node dist/bench/build-bench.js --baseline-cli $BEFORE --runs 1"; } > $R/build-bench-$D.log
node dist/bench/build-bench.js --baseline-cli $BEFORE --runs 1 > $R/build-bench-$D.txt 2>> $R/build-bench-$D.log
echo "# exit $?" >> $R/build-bench-$D.log
stamp "end build-bench" >> $R/build-bench-$D.log
echo "## sandbox-cost after, --network none" >> $R/sandbox-cost-$D.txt; sc after-none --steps 100 --network none
echo "## sandbox-cost before, --network none" >> $R/sandbox-cost-$D.txt; sc before-none --steps 100 --network none --cli $BEFORE
echo ALLDONE
