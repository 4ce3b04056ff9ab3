#!/bin/bash
# The floor under the sandbox's cost per step: `crun run` of the step's own spec, N times in a
# loop, with nothing of Slipway's around each run. sandbox-cost.js --floor N passes this script
# as the step's OCI runtime (--runtime), so it runs where crun would: inside the shim's private
# mount namespace, with the step's rootfs, namespaces and bundle ready. It gets crun's command
# line (... --log=FILE ... run --bundle DIR ID), binds crun read-only over itself as the shim
# does for a runtime (so crun skips its self-copy), runs crun N times (N read from floor-n beside
# the log file), and writes one duration in milliseconds per line to floor.txt beside the log file.
set -euo pipefail
CRUN=${CRUN:-$(command -v crun)}
args=("$@")
log=
id=
for a in "$@"; do case $a in --log=*) log=${a#--log=} ;; esac; done
id=${args[$((${#args[@]} - 1))]}
dir=$(dirname "$log")
n=$(cat "$dir/floor-n")
mount --bind "$CRUN" "$CRUN"
mount -o remount,ro,bind,nosuid,nodev "$CRUN"
: >"$dir/floor.txt"
for i in $(seq "$n"); do
  t0=$EPOCHREALTIME
  "$CRUN" "${args[@]:0:$((${#args[@]} - 1))}" "$id-$i"
  t1=$EPOCHREALTIME
  echo "$(( (${t1/./} - ${t0/./}) ))" | awk '{ printf "%.3f\n", $1 / 1000 }' >>"$dir/floor.txt"
done
