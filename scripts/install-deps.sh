#!/usr/bin/env bash
# Installs what Slipway and its tests need on Debian 12 (run as root): the busybox base,
# xattr tools (overlay opaque directories), archive tools, skopeo/umoci (image format checks),
# the CNCF registry, htpasswd (apache2-utils) and Redis (registry and farm tests), then the npm dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(busybox-static attr xz-utils bzip2 util-linux skopeo umoci docker-registry apache2-utils redis-server)
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
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
  npm ci --no-audit --no-fund
fi
