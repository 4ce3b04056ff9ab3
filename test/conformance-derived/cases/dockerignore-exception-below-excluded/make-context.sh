#!/bin/sh
# Runs in the build context folder; sets what git cannot keep: folder modes that differ from
# the 0755 a folder gets when only its contents reach the daemon.
set -eu
chmod 0700 dir
chmod 0750 dir/sub
