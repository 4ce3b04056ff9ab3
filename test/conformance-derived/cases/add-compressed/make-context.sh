mkdir -p src/d && echo hello > src/d/a.txt && echo world > src/b.txt && ln -s d/a.txt src/link
tar --owner=0 --group=0 --mtime=@1600000000 -C src -cJf t.tar.xz . && tar --owner=0 --group=0 --mtime=@1600000000 -C src -cjf t.tar.bz2 . && tar --owner=0 --group=0 --mtime=@1600000000 -C src -czf t.tar.gz .
tar --owner=0 --group=0 --mtime=@1600000000 -cf nested.tar t.tar.gz && rm -rf src
