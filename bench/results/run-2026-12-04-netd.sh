#!/bin/bash
# The sandbox-cost rounds of sandbox-cost-2026-12-04-netd.txt. BEFORE: a built tree of 2e412e3
# (slirp4netns per step); AFTER: a built tree of 7eb3467 (slipway-netd). Idle machine.
B=${BEFORE:?built tree of 2e412e3}/dist/src/cli/main.js
A=${AFTER:?built tree of 7eb3467}/dist/src/cli/main.js
for r in 1 2 3; do for net in default none; do for cli in "$B" "$A"; do
  echo "== round $r $net $cli"; node "$AFTER/dist/bench/sandbox-cost.js" --steps 100 --network $net --cli "$cli" | grep "sandbox alone"
done; done; done
for r in 4 5 6 7; do for x in "default $A" "none $A" "default $B"; do set -- $x
  echo "== round $r $1 $2"; node "$AFTER/dist/bench/sandbox-cost.js" --steps 100 --network $1 --cli $2 | grep "sandbox alone"
done; done
