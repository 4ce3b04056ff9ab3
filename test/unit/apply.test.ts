import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, lstat, lutimes, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { makeTar as makeTarBuffer, type Spec } from '../support/tar.js';
import { SlipwayError } from '../../src/errors.js';
import { applyTarToRoot } from '../../src/snapshot/apply.js';
import { resolveInRoot } from '../../src/snapshot/resolve-in-root.js';

/** The crafted tar as the stream the applier reads. */
async function makeTar(entries: Spec[]): Promise<Readable> {
  return Readable.from([await makeTarBuffer(entries)]);
}

async function withTmp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'slipway-apply-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const sym = (name: string, linkname: string): Spec => ({ name, type: 'symlink', linkname, mode: 0o120777 });
const dir = (name: string, mode: number, mtime = 1_000_000_000): Spec => ({ name, type: 'directory', mode: 0o40000 | mode, mtime: new Date(mtime * 1000) });

test('resolveInRoot resolves like a chroot', async () => {
  await withTmp(async (root) => {
    await mkdir(join(root, 'usr/lib'), { recursive: true });
    await writeFile(join(root, 'f'), '');
    await symlink('usr/lib', join(root, 'lib'));
    await symlink('/usr/lib', join(root, 'abs'));
    await symlink('../../..', join(root, 'up'));
    await symlink('/../../usr', join(root, 'dotdot'));
    await symlink('loop2', join(root, 'loop1'));
    await symlink('loop1', join(root, 'loop2'));
    await symlink('../lib/../../usr', join(root, 'usr/rel'));
    const cases: [string, string, boolean?][] = [
      ['lib/x', 'usr/lib/x'],
      ['abs/x', 'usr/lib/x'],
      ['../../etc', 'etc'],
      ['up/etc', 'etc'],
      ['dotdot/lib', 'usr/lib'],
      ['missing/../lib/x', 'usr/lib/x'],
      ['usr/rel/lib', 'usr/lib'],
      ['lib', 'usr/lib'],
      ['lib', 'lib', false],
      ['/', ''],
      ['', ''],
      ['f/x/y', 'f/x/y'],
      ['a/b/../c', 'a/c'],
    ];
    for (const [path, want, followFinal] of cases) {
      const got = await resolveInRoot(root, path, followFinal === undefined ? {} : { followFinal });
      assert.equal(got, want === '' ? root : join(root, want), `${path} (followFinal ${String(followFinal)})`);
    }
    await assert.rejects(resolveInRoot(root, 'loop1/x'), (e: NodeJS.ErrnoException) => e.code === 'ELOOP');
  });
});

test('applyTarToRoot extracts like Docker ADD into a rootfs', async () => {
  await withTmp(async (root) => {
    await chmod(root, 0o755);
    await mkdir(join(root, 'usr/lib'), { recursive: true });
    await symlink('usr/lib', join(root, 'lib'));
    await mkdir(join(root, 'etc'));
    await writeFile(join(root, 'etc/keep'), 'kept');
    await mkdir(join(root, 'bin'));
    await writeFile(join(root, 'bin/old'), 'a file that becomes a directory');
    await mkdir(join(root, 'olddir/sub'), { recursive: true });
    const tar = await makeTar([
      dir('etc/', 0o700, 1_100_000_000),
      { name: 'etc/new', body: 'new', uid: 1000, gid: 1001, mode: 0o100640 },
      { name: 'lib/libfoo.so', body: 'foo' },
      { name: 'bin/su', body: 'su', mode: 0o104755 },
      dir('tmp/', 0o1777),
      dir('srv/', 0o2775),
      sym('abs', '/usr/lib'),
      { name: 'abs/viaabs', body: 'via' },
      { name: 'hl', type: 'link', linkname: 'etc/new', mode: 0o100640, uid: 1000, gid: 1001 },
      { name: '.wh.keepme', body: '' },
      { name: 'dev/fifo', type: 'fifo', mode: 0o10600 },
      { name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o20666 },
      { name: 'olddir', body: 'now a file' },
      dir('bin/old/', 0o755),
      { name: './', type: 'directory', mode: 0o40700 },
    ]);
    await applyTarToRoot(tar, root, '/');
    const st = (p: string) => lstat(join(root, p));
    assert.equal(await readFile(join(root, 'etc/keep'), 'utf8'), 'kept', 'existing directories are merged');
    assert.equal((await st('etc')).mode & 0o7777, 0o700);
    assert.equal((await st('etc')).mtimeMs, 1_100_000_000_000, 'directory mtime survives its children');
    const n = await st('etc/new');
    assert.deepEqual([n.uid, n.gid, n.mode & 0o7777, n.mtimeMs], [1000, 1001, 0o640, 1_000_000_000_000]);
    assert.equal(await readFile(join(root, 'usr/lib/libfoo.so'), 'utf8'), 'foo', 'lib -> usr/lib is followed');
    assert.ok((await st('lib')).isSymbolicLink());
    assert.equal((await st('bin/su')).mode & 0o7777, 0o4755);
    assert.equal((await st('tmp')).mode & 0o7777, 0o1777);
    assert.equal((await st('srv')).mode & 0o7777, 0o2775);
    assert.equal(await readlink(join(root, 'abs')), '/usr/lib');
    assert.equal(await readFile(join(root, 'usr/lib/viaabs'), 'utf8'), 'via', 'absolute symlinks resolve inside the root');
    assert.equal((await st('hl')).ino, n.ino);
    assert.ok((await st('.wh.keepme')).isFile(), 'whiteout names are ordinary files for ADD');
    assert.ok((await st('dev/fifo')).isFIFO());
    const dn = await st('dev/null');
    assert.ok(dn.isCharacterDevice() && dn.rdev === ((1 << 8) | 3) && (dn.mode & 0o7777) === 0o666);
    assert.equal(await readFile(join(root, 'olddir'), 'utf8'), 'now a file');
    assert.ok((await st('bin/old')).isDirectory());
    assert.equal((await lstat(root)).mode & 0o7777, 0o755, 'the archive root entry is skipped');
  });
});

test('applyTarToRoot keeps names at the destination and honours uid/gid', async () => {
  await withTmp(async (root) => {
    await mkdir(join(root, 'real/app'), { recursive: true });
    await symlink('/real/app', join(root, 'app'));
    const tar = await makeTar([
      { name: '../escape', body: 'e', uid: 5 },
      { name: '/abs', body: 'a', uid: 5 },
      dir('d/', 0o755),
      { name: 'd/f', body: 'f', uid: 5, gid: 6 },
    ]);
    await applyTarToRoot(tar, root, '/app/', { uid: 1234, gid: 4321 });
    for (const p of ['escape', 'abs', 'd', 'd/f']) {
      const s = await lstat(join(root, 'real/app', p));
      assert.deepEqual([s.uid, s.gid], [1234, 4321], p);
    }
    assert.ok(!existsSync(join(root, 'escape')));
  });
});

// ---- hostile archives -------------------------------------------------------------------

/** Metadata (incl. ctime and nlink) and content of everything under `dir` except `skip`. */
async function snapshot(dir: string, skip: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (p: string): Promise<void> => {
    for (const n of (await readdir(p)).sort()) {
      const q = join(p, n);
      if (q === skip) continue;
      const st = await lstat(q, { bigint: true });
      const content = st.isFile() ? createHash('sha256').update(await readFile(q)).digest('hex') : '';
      out.push(`${q} ${st.mode} ${st.uid}:${st.gid} n${st.nlink} m${st.mtimeNs} c${st.ctimeNs} ${content}`);
      if (st.isDirectory()) await walk(q);
    }
  };
  const st = await lstat(dir, { bigint: true });
  out.push(`${dir} ${st.mode} m${st.mtimeNs} c${st.ctimeNs}`);
  await walk(dir);
  return out;
}

const ABS = `/slipway-abs-${process.pid}`;

function hostileCases(sentinel: string): [string, Spec[]][] {
  return [
    ['../escape', [{ name: '../escape', body: 'x' }]],
    ['/abs', [{ name: `${ABS}/f`, body: 'x' }]],
    ['a/../../x', [{ name: 'a/../../x', body: 'x' }]],
    ['symlink to outside, then a file through it', [sym('x', sentinel), { name: 'x/secret', body: 'pwned' }]],
    ['relative symlink climbing out, then x/y', [sym('x', '../../../..'), { name: 'x/sentinel/secret', body: 'pwned' }]],
    ['hard link to ../../etc/passwd', [{ name: 'h', type: 'link', linkname: '../../etc/passwd' }]],
    ['hard link climbing to the sentinel', [{ name: 'h', type: 'link', linkname: '../../../../sentinel/secret' }]],
    ['hard link to an absolute path', [{ name: 'h', type: 'link', linkname: join(sentinel, 'secret') }]],
    ['hard link to a symlink pointing outside', [sym('s', join(sentinel, 'secret')), { name: 'h', type: 'link', linkname: 's' }]],
    ['directory entry through a symlink (tar-fs 3.1.3 chmod bug)', [sym('x', sentinel), dir('x', 0o777, 0)]],
    ['directory below a symlink', [sym('x', sentinel), dir('x/sub/', 0o777, 0)]],
    ['directory recorded, then replaced by a symlink', [dir('d/', 0o777, 0), sym('d', sentinel)]],
    ['parent replaced by a symlink after a child directory', [dir('p/', 0o755), dir('p/sentinel/', 0o777, 0), sym('p', '../../../..')]],
    ['symlink chain out of the root', [sym('a', '../../../../..'), sym('b', 'a/sentinel'), { name: 'b/secret', body: 'pwned' }]],
  ];
}

test('applyTarToRoot contains hostile archives inside the root', async () => {
  for (const [name] of hostileCases('')) {
    await withTmp(async (base) => {
      const sentinel = join(base, 'sentinel');
      await mkdir(sentinel, { mode: 0o700 });
      await writeFile(join(sentinel, 'secret'), 'secret', { mode: 0o600 });
      await lutimes(join(sentinel, 'secret'), 1_234_567_890, 1_234_567_890);
      await lutimes(sentinel, 1_234_567_890, 1_234_567_890);
      const root = join(base, 'work/a/b/root');
      await mkdir(root, { recursive: true });
      const entries = hostileCases(sentinel).find(([n]) => n === name)?.[1] ?? [];
      const before = await snapshot(base, root);
      const err = await applyTarToRoot(await makeTar(entries), root, '/').then(() => null, (e: unknown) => e);
      if (err !== null) assert.ok(err instanceof SlipwayError && err.code === 'ERR_BAD_ARCHIVE', `${name}: ${String(err)}`);
      assert.deepEqual(await snapshot(base, root), before, `${name}: something outside the root changed`);
      assert.ok(!existsSync(ABS), `${name}: wrote ${ABS}`);
    });
  }
});
