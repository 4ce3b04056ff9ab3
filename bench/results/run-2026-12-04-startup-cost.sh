#!/bin/bash
# startup-cost (branch startup): warm standalone builds of seed and many-steps, this tree, the tree
# at 5b1a9d9 and main at 6ed073c (git archive + npm ci + npm run build in /tmp/su/main-tree), on
# Node 20 (the machine's), then this tree and 5b1a9d9 on Node 24.21.0 (compile cache on for this tree).
cd "$(dirname "$0")/../.."
R=bench/results/startup-cost-2026-12-04
BEFORE=/work/wt/before/dist/src/cli/main.js
MAIN=${MAIN:-/tmp/su/main-tree/dist/src/cli/main.js}
N24=${N24:-$(ls -d /root/.npm/_npx/*/node_modules/node/bin/node | head -1)}
{ echo "## node 20: $(date -u +%H:%M:%S) $(uptime)"; echo "# command: node dist/bench/startup-cost.js --cli now=dist/src/cli/main.js --cli before=$BEFORE --cli main=$MAIN --runs 15"; } > $R.txt
node dist/bench/startup-cost.js --cli now=dist/src/cli/main.js --cli before=$BEFORE --cli main=$MAIN --runs 15 >> $R.txt 2>&1
{ echo; echo "## node 24: $(date -u +%H:%M:%S) $(uptime)"; echo "# command: node dist/bench/startup-cost.js --node $N24 --cli now=dist/src/cli/main.js --cli before=$BEFORE --runs 15"; } >> $R.txt
node dist/bench/startup-cost.js --node $N24 --cli now=dist/src/cli/main.js --cli before=$BEFORE --runs 15 >> $R.txt 2>&1
echo "# end: $(date -u +%H:%M:%S) $(uptime)" >> $R.txt
