#!/usr/bin/env bash
# The seed's example, end to end on a fresh machine (as root): install what is needed, build
# Slipway, make the busybox base image from Debian's busybox-static, import it, build
# `FROM busybox / RUN touch scooby_snacks.txt` twice (the second from the cache), and show
# the store the way the seed does.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
npm run build --silent
export SLIPWAY_ROOT=${SLIPWAY_ROOT:-/var/lib/slipway}
slipway() { node dist/src/cli/main.js "$@"; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "== base image: busybox rootfs from Debian's busybox-static"
bash scripts/make-busybox-rootfs.sh "$work/busybox-rootfs.tar"
slipway import --change 'CMD ["sh"]' "$work/busybox-rootfs.tar" busybox:latest
mkdir "$work/ctx"
printf 'FROM busybox\nRUN touch scooby_snacks.txt\n' > "$work/ctx/Dockerfile"
echo "== docker build -t scooby_snacks ."
slipway build -t scooby_snacks "$work/ctx"
echo "== again: every step from the cache"
slipway build -t thoward/scooby_snacks "$work/ctx"
echo "== images"
slipway images
# JSON printed with Node (installed above), not python3, which a minimal Debian may lack.
pretty() { node -e 'console.log(JSON.stringify(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")), null, 4))' "$1"; }
echo "== $SLIPWAY_ROOT/repositories"
pretty "$SLIPWAY_ROOT/repositories"
id=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).Repositories.scooby_snacks.latest)' "$SLIPWAY_ROOT/repositories")
echo "== $SLIPWAY_ROOT/graph/$id"
ls -al "$SLIPWAY_ROOT/graph/$id" "$SLIPWAY_ROOT/graph/$id/layer"
pretty "$SLIPWAY_ROOT/graph/$id/json"
echo "== run -i -t scooby_snacks ls -al /"
slipway run --rm scooby_snacks ls -al /
