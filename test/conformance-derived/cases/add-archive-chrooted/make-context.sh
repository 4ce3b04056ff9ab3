#!/bin/sh
# Runs in the build context folder; makes the archive (git cannot keep it readably).
set -eu
mkdir s
ln -s .. s/up
ln -s / s/abs
printf 'through the upward link\n' > s/x
printf 'through the absolute link\n' > s/y
chmod 0644 s/x s/y
# x and y are stored under the names up/x and abs/y, after the links.
tar --mtime=@1577836800 --owner=0 --group=0 --numeric-owner --format=ustar \
  --transform='s,^x$,up/x,' --transform='s,^y$,abs/y,' -C s -cf links.tar up abs x y
rm -rf s
