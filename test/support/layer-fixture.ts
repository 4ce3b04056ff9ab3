/** A layer folder with one of every kind of entry, and a description of a tree to compare two by. */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, link, lstat, lutimes, mkdir, readdir, readFile, readlink, symlink, writeFile, lchown } from 'node:fs/promises';
import { join } from 'node:path';

export function opaqueOf(p: string): string | null {
  try {
    return execFileSync('getfattr', ['--only-values', '-h', '-n', 'trusted.overlay.opaque', p], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
  } catch {
    return null;
  }
}

/** Everything we promise to keep, per path; hard links as the first path of their inode. */
export async function describeTree(root: string): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  const inodes = new Map<bigint, string>();
  const walk = async (rel: string): Promise<void> => {
    const names = (await readdir(join(root, rel))).sort();
    for (const name of names) {
      const r = rel === '' ? name : `${rel}/${name}`;
      const p = join(root, r);
      const st = await lstat(p, { bigint: true });
      const whiteout = st.isCharacterDevice() && st.rdev === 0n;
      const d: Record<string, unknown> = {
        path: r,
        type: st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : st.isFIFO() ? 'fifo' : st.isCharacterDevice() ? 'chr' : st.isBlockDevice() ? 'blk' : 'other',
        mode: Number(st.mode & 0o7777n),
        uid: Number(st.uid),
        gid: Number(st.gid),
        mtime: Number(st.mtimeNs / 1_000_000_000n),
        rdev: Number(st.rdev),
      };
      if (st.isFile()) d['sha'] = createHash('sha256').update(await readFile(p)).digest('hex');
      if (st.isSymbolicLink()) d['target'] = await readlink(p);
      if (st.isDirectory()) d['opaque'] = opaqueOf(p);
      // Whiteouts may share one inode after unpacking (as overlayfs does); not a hard link to compare.
      if (!st.isDirectory() && !whiteout && st.nlink > 1n) {
        d['linkGroup'] = inodes.get(st.ino) ?? r;
        if (!inodes.has(st.ino)) inodes.set(st.ino, r);
      }
      out.push(d);
      if (st.isDirectory()) await walk(r);
    }
  };
  await walk('');
  return out;
}

/** A layer folder with one of everything, with fixed mtimes. */
export async function makeLayer(dir: string): Promise<void> {
  const mk = (p: string, mode: number) => mkdir(join(dir, p), { recursive: true }).then(() => chmod(join(dir, p), mode));
  await mk('etc', 0o755);
  await mk('tmp', 0o1777);
  await mk('srv', 0o2775);
  await mk('usr/lib', 0o755);
  await mk('var/cache', 0o750);
  await mk('dev', 0o755);
  await mk('a', 0o755);
  await writeFile(join(dir, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\n');
  await lchown(join(dir, 'etc/passwd'), 1000, 1001);
  await writeFile(join(dir, 'etc/shadow'), 'secret\n');
  await chmod(join(dir, 'etc/shadow'), 0o000);
  await mk('bin', 0o755);
  await writeFile(join(dir, 'bin/su'), 'ELF');
  await chmod(join(dir, 'bin/su'), 0o4755);
  await writeFile(join(dir, 'srv/big-uid'), 'x');
  await lchown(join(dir, 'srv/big-uid'), 300000, 300001);
  await symlink('/bin/bash', join(dir, 'bin/sh'));
  await symlink('usr/lib', join(dir, 'lib'));
  await writeFile(join(dir, 'usr/lib/libc.so'), 'libc');
  await link(join(dir, 'usr/lib/libc.so'), join(dir, 'usr/lib/libc.so.6'));
  // walk order puts a/z before a.txt ("a" < "a.txt"), so a.txt becomes the link entry
  await writeFile(join(dir, 'a/z'), 'zz');
  await link(join(dir, 'a/z'), join(dir, 'a.txt'));
  execFileSync('mknod', ['-m', '644', join(dir, 'dev/fifo'), 'p']);
  execFileSync('mknod', ['-m', '666', join(dir, 'dev/null'), 'c', '1', '3']);
  execFileSync('mknod', ['-m', '660', join(dir, 'dev/loop0'), 'b', '7', '0']);
  execFileSync('mknod', ['-m', '000', join(dir, 'old'), 'c', '0', '0']);
  execFileSync('mknod', ['-m', '000', join(dir, 'etc/gone'), 'c', '0', '0']);
  execFileSync('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', join(dir, 'var/cache')]);
  await writeFile(join(dir, 'var/cache/new'), 'fresh');
  const long = `${'d'.repeat(60)}/${'e'.repeat(60)}/${'f'.repeat(80)}`;
  await mkdir(join(dir, long, '..'), { recursive: true });
  await writeFile(join(dir, long), 'long name');
  await writeFile(join(dir, 'ünïcødé.txt'), 'utf8');
  // fixed mtimes, deepest first so parents keep theirs
  const all: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const n of await readdir(join(dir, rel))) {
      const r = rel === '' ? n : `${rel}/${n}`;
      all.push(r);
      if ((await lstat(join(dir, r))).isDirectory()) await walk(r);
    }
  };
  await walk('');
  all.sort((x, y) => y.split('/').length - x.split('/').length);
  let t = 1_600_000_000;
  for (const r of all) await lutimes(join(dir, r), t, (t += 7));
}

