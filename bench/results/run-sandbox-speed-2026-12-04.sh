#!/bin/bash
# The sandbox-speed figures of 2026-12-04 (bench/results/sandbox-cost-2026-12-04-speed.txt).
# BEFORE: the CLI of main at 8db16dc (the sandbox as issue 10 left it; main's sandbox is unchanged
# since), built in its own tree; AFTER: this branch. Pairs alternate before/after so both see the
# same machine. The machine was shared (load average 5-9 on 2 cores from other engineers' runs):
# the first passes run the bench under SCHED_FIFO (chrt -f 10; its children inherit it), which
# keeps the other load from preempting the measured chain, the last pass at normal priority.
set -u
BEFORE=${BEFORE:-/tmp/ssb/base/dist/src/cli/main.js}
AFTER=${AFTER:-$(pwd)/dist/src/cli/main.js}
run() { echo "## $*"; echo "# $(uptime)"; "$@" 2>&1 | grep -v '^$'; }
for pass in 1 2; do
  for net in none default; do
    run chrt -f 10 node dist/bench/sandbox-cost.js --steps 100 --network $net --cli "$BEFORE"
    run chrt -f 10 node dist/bench/sandbox-cost.js --steps 100 --network $net --cli "$AFTER" --floor 50
  done
done
for net in none default; do
  run node dist/bench/sandbox-cost.js --steps 100 --network $net --cli "$BEFORE"
  run node dist/bench/sandbox-cost.js --steps 100 --network $net --cli "$AFTER" --floor 50
done
echo "# $(uptime)"
