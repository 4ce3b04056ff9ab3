#!/usr/bin/env bash
# Makes the base image's root filesystem from Debian's busybox-static, reproducibly:
# bin/busybox plus its applet symlinks, etc/passwd and etc/group (root, nobody), tmp (1777),
# root (0700), empty proc sys dev var; sorted names, mtime 2020-01-01, owner 0:0, POSIX tar
# without atime/ctime. With busybox-static 1:1.35.0-4+deb12u1+b1 the tar's sha256 is
#   a216177828693b9634f2498386919beb30298fe565d06ad8c7216777cede5d7c
# usage: scripts/make-busybox-rootfs.sh OUT.tar   (root; installs busybox-static if missing)
set -euo pipefail
out=${1:?usage: make-busybox-rootfs.sh OUT.tar}
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
if [ ! -x /bin/busybox ]; then
  echo "installing busybox-static" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 0755 "$work"
mkdir "$work/bin" "$work/etc" "$work/tmp" "$work/root" "$work/proc" "$work/sys" "$work/dev" "$work/var"
install -m 0755 /bin/busybox "$work/bin/busybox"
# The applet list comes from the binary itself; each applet is a symlink to /bin/busybox.
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -s /bin/busybox "$work/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' > "$work/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' > "$work/etc/group"
chmod 0644 "$work/etc/passwd" "$work/etc/group"
chmod 0755 "$work/bin" "$work/etc" "$work/proc" "$work/sys" "$work/dev" "$work/var"
chmod 1777 "$work/tmp"
chmod 0700 "$work/root"
tar --sort=name --mtime='2020-01-01 00:00:00Z' --owner=0 --group=0 --numeric-owner \
    --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -C "$work" -cf "$out" .
sha256sum "$out" | cut -d' ' -f1
