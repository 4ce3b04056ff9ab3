#!/usr/bin/env bash
# Installs what Slipway and its tests need on Debian 12 (run as root): the OCI runtimes that run
# RUN steps (crun, and runc, which the tests also exercise), gcc, libc6-dev, libseccomp-dev and
# libslirp-dev (the sandbox shim, the seccomp compiler and the network daemon, which gives a
# step its outbound network with libslirp, are C; tests build static probes), libssl-dev (the
# native layer packer's sha256), the busybox base, xattr tools (only the tests read xattrs with
# getfattr; Slipway uses a native binding), archive tools, skopeo/umoci (image format checks), the
# CNCF registry, htpasswd (apache2-utils), Redis (registry and farm tests), iproute2, iptables and tmux
# (network and terminal tests), then the npm dependencies and Node.js 24 for CI (npm's `node`). It also registers Slipway's
# subordinate id range (root in a step is host uid 1000000000) in /etc/subuid and /etc/subgid.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(crun runc gcc libc6-dev libseccomp-dev libslirp-dev libssl-dev iptables busybox-static attr xz-utils bzip2 util-linux skopeo umoci docker-registry apache2-utils redis-server iproute2 tmux openssh-client)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts these services on install; Slipway's tests start their own on private ports.
  systemctl disable --now redis-server docker-registry >/dev/null 2>&1 || true
fi
# The ids a step's user namespace maps to: registered so that nothing else is handed them.
for f in /etc/subuid /etc/subgid; do
  touch "$f"
  grep -q '^slipway:' "$f" || echo 'slipway:1000000000:65536' >> "$f"
done
# Node.js: the machine's must meet package.json's engines (>=20.19; 24 LTS is the primary
# target, 22 LTS is supported). Node 24 for CI comes from the npm registry's `node` package.
node -e 'const [a, b] = process.versions.node.split(".").map(Number); if (a < 20 || (a === 20 && b < 19)) { console.error(`Node.js ${process.versions.node} is too old: Slipway needs 20.19 or later (24 LTS recommended)`); process.exit(1); }'
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
  npm ci --no-audit --no-fund
fi
# CI's second run (.ci/run): fetch Node.js 24 into npx's cache now, so the tests need no download.
npx -y -p node@24.21.0 node --version >/dev/null
