import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, link, lstat, lutimes, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { extract, type Header } from 'tar-stream';
import { makeTar, type Spec } from '../support/tar.js';
import { describeTree, makeLayer, opaqueOf } from '../support/layer-fixture.js';
import { SlipwayError } from '../../src/errors.js';
import { layerSize, packLayer } from '../../src/snapshot/pack.js';
import { unpackLayer } from '../../src/snapshot/unpack.js';
import { decompressStream } from '../../src/snapshot/tar-read.js';

async function listTar(buf: Buffer): Promise<Header[]> {
  const out: Header[] = [];
  const ex = extract();
  Readable.from([buf]).pipe(ex as unknown as NodeJS.WritableStream);
  for await (const entry of ex) {
    out.push(entry.header);
    for await (const _ of entry) void _;
  }
  return out;
}

async function packToBuffer(dir: string, opts?: { clampMtime?: number }): Promise<{ buf: Buffer; diffId: string; size: number }> {
  const chunks: Buffer[] = [];
  const sink = new Writable({ write: (c: Buffer, _e, cb) => (chunks.push(c), cb()) });
  const r = await packLayer(dir, sink, opts);
  return { buf: Buffer.concat(chunks), ...r };
}

async function withTmp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'slipway-layer-tar-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('packLayer → unpackLayer round-trips every kind of entry and is deterministic', async () => {
  await withTmp(async (tmp) => {
    const src = join(tmp, 'src');
    await mkdir(src);
    await makeLayer(src);
    const first = await packToBuffer(src);
    assert.equal(first.diffId, `sha256:${createHash('sha256').update(first.buf).digest('hex')}`);
    assert.equal(first.size, first.buf.length);
    assert.equal((await packLayer(src, null)).diffId, first.diffId, 'packing twice gives the same diffId');

    const dst = join(tmp, 'dst');
    const un = await unpackLayer(Readable.from([first.buf]), dst);
    assert.deepEqual(un, { diffId: first.diffId, size: first.size });
    assert.deepEqual(await describeTree(dst), await describeTree(src));
    assert.equal((await packLayer(dst, null)).diffId, first.diffId, 'the unpacked layer packs to the same bytes');
  });
});

test('packLayer writes Docker-style entries in walk order', async () => {
  await withTmp(async (tmp) => {
    await makeLayer(tmp);
    const headers = await listTar((await packToBuffer(tmp)).buf);
    const names = headers.map((h) => h.name);
    assert.ok(!names.includes('.') && !names.includes('./'));
    assert.ok(names.every((n) => !n.startsWith('./') && !n.startsWith('/')));
    const idx = (n: string): number => names.indexOf(n);
    assert.ok(idx('a/') < idx('a/z') && idx('a/z') < idx('a.txt'), 'depth-first, bytewise');
    assert.ok(idx('etc/') < idx('etc/.wh.gone') && idx('etc/.wh.gone') < idx('etc/passwd'));
    assert.equal(idx('var/cache/.wh..wh..opq'), idx('var/cache/') + 1, 'opaque marker right after its directory');
    const by = new Map(headers.map((h) => [h.name, h]));
    const get = (n: string): Header => by.get(n) ?? assert.fail(`missing ${n}`);
    assert.deepEqual([get('a.txt').type, get('a.txt').linkname], ['link', 'a/z']);
    assert.deepEqual([get('usr/lib/libc.so.6').type, get('usr/lib/libc.so.6').linkname], ['link', 'usr/lib/libc.so']);
    const wh = get('.wh.old');
    assert.deepEqual([wh.type, wh.mode, wh.size, wh.uid], ['file', 0o600, 0, 0]);
    const opq = get('var/cache/.wh..wh..opq');
    assert.deepEqual([opq.type, opq.mode, opq.mtime.getTime()], ['file', 0o750, 0]);
    assert.equal(get('bin/su').mode, 0o4755);
    assert.equal(get('tmp/').mode, 0o1777);
    assert.equal(get('srv/').mode, 0o2775);
    assert.equal(get('etc/shadow').mode, 0);
    assert.deepEqual([get('etc/passwd').uid, get('etc/passwd').gid, get('etc/passwd').uname, get('etc/passwd').gname], [1000, 1001, '', '']);
    assert.deepEqual([get('dev/null').type, get('dev/null').devmajor, get('dev/null').devminor], ['character-device', 1, 3]);
    assert.deepEqual([get('dev/loop0').type, get('dev/loop0').devmajor], ['block-device', 7]);
    assert.equal(get('dev/fifo').type, 'fifo');
    assert.deepEqual([get('bin/sh').type, get('bin/sh').linkname], ['symlink', '/bin/bash']);
    assert.equal((get('srv/big-uid').pax as Record<string, string> | null)?.['uid'], '300000');
    assert.ok(names.includes('ünïcødé.txt'));
  });
});

test('packLayer clamps mtimes above clampMtime only', async () => {
  await withTmp(async (tmp) => {
    await writeFile(join(tmp, 'new'), 'n');
    await writeFile(join(tmp, 'old'), 'o');
    await lutimes(join(tmp, 'new'), 2_000_000_000, 2_000_000_000);
    await lutimes(join(tmp, 'old'), 1_000_000_000, 1_000_000_000);
    const headers = await listTar((await packToBuffer(tmp, { clampMtime: 1_500_000_000 })).buf);
    const secs = Object.fromEntries(headers.map((h) => [h.name, h.mtime.getTime() / 1000]));
    assert.deepEqual(secs, { new: 1_500_000_000, old: 1_000_000_000 });
  });
});

test('layerSize counts non-directories once per inode', async () => {
  await withTmp(async (tmp) => {
    await writeFile(join(tmp, 'a'), '12345');
    await link(join(tmp, 'a'), join(tmp, 'b'));
    await mkdir(join(tmp, 'd'));
    await writeFile(join(tmp, 'd/c'), '123');
    await symlink('abcd', join(tmp, 's'));
    assert.equal(await layerSize(tmp), 5 + 3 + 4);
  });
});

test('unpackLayer turns whiteouts into overlay form', async () => {
  await withTmp(async (tmp) => {
    const tar = await makeTar([
      { name: '.wh.gone', uid: 0 },
      { name: '.wh.also', uid: 0 },
      { name: '.wh.d' },
      { name: 'd/x', body: 'x' },
      { name: 'e/', type: 'directory', mode: 0o40755 },
      { name: 'e/.wh..wh..opq' },
      { name: '.wh..wh.plnk/123', body: 'aufs' },
      { name: '.wh..wh.plnk/x/.wh..wh..opq' },
      { name: 'f/.wh..wh..opq' },
    ]);
    const dir = join(tmp, 'layer');
    await unpackLayer(Readable.from([tar]), dir);
    for (const w of ['gone', 'also']) {
      const st = await lstat(join(dir, w));
      assert.ok(st.isCharacterDevice() && st.rdev === 0 && (st.mode & 0o7777) === 0, w);
    }
    assert.equal((await lstat(join(dir, 'gone'))).ino, (await lstat(join(dir, 'also'))).ino, 'equal whiteouts share an inode');
    assert.equal(opaqueOf(join(dir, 'd')), 'y', 'a whiteout followed by contents is an opaque directory');
    assert.equal(opaqueOf(join(dir, 'e')), 'y');
    assert.equal(opaqueOf(join(dir, 'f')), 'y', 'the directory of .wh..wh..opq is created when missing');
    assert.ok(!existsSync(join(dir, '.wh..wh.plnk')));
    assert.deepEqual((await readdir(dir)).sort(), ['also', 'd', 'e', 'f', 'gone']);
  });
});

test('decompressStream sniffs gzip, bzip2, xz and plain tar', async () => {
  const tar = await makeTar([{ name: 'hello', body: 'world' }]);
  const cases: [string, Buffer][] = [
    ['tar', tar],
    ['gzip', gzipSync(tar)],
    ['bzip2', execFileSync('bzip2', ['-c'], { input: tar })],
    ['xz', execFileSync('xz', ['-c'], { input: tar })],
    ['unknown', Buffer.from('just some text')],
  ];
  for (const [kind, data] of cases) {
    const r = await decompressStream(Readable.from([data.subarray(0, 3), data.subarray(3)]));
    assert.equal(r.kind, kind);
    const chunks: Buffer[] = [];
    for await (const c of r.stream) chunks.push(c as Buffer);
    assert.deepEqual(Buffer.concat(chunks), kind === 'unknown' ? data : tar, kind);
  }
  const broken = await decompressStream(Readable.from([Buffer.from([0x42, 0x5a, 0x68, 0x39, 1, 2, 3])]));
  await assert.rejects(async () => {
    for await (const _ of broken.stream) void _;
  }, (e: unknown) => e instanceof SlipwayError && e.code === 'ERR_BAD_ARCHIVE');
});

test('unpackLayer reports corrupt and truncated tars as ERR_BAD_ARCHIVE', async () => {
  const tar = await makeTar([{ name: 'f', body: 'x'.repeat(2000) }]);
  const garbage = Buffer.alloc(1024, 0x41);
  for (const data of [garbage, tar.subarray(0, 1000)]) {
    await withTmp(async (tmp) => {
      await assert.rejects(unpackLayer(Readable.from([data]), join(tmp, 'l')), (e: unknown) => e instanceof SlipwayError && e.code === 'ERR_BAD_ARCHIVE');
    });
  }
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

/** base/sentinel (a 0700 dir with a secret) and base/work/a/b/target; returns the paths. */
async function hostileWorld(base: string): Promise<{ sentinel: string; target: string }> {
  const sentinel = join(base, 'sentinel');
  await mkdir(sentinel, { mode: 0o700 });
  await writeFile(join(sentinel, 'secret'), 'secret', { mode: 0o600 });
  await lutimes(join(sentinel, 'secret'), 1_234_567_890, 1_234_567_890);
  await lutimes(sentinel, 1_234_567_890, 1_234_567_890);
  const target = join(base, 'work/a/b/target');
  await mkdir(target, { recursive: true });
  return { sentinel, target };
}

const ABS = `/slipway-abs-${process.pid}`;

function hostileCases(sentinel: string): { name: string; entries: Spec[] }[] {
  const sym = (name: string, linkname: string): Spec => ({ name, type: 'symlink', linkname, mode: 0o120777 });
  return [
    { name: '../escape', entries: [{ name: '../escape', body: 'x' }] },
    { name: '/abs', entries: [{ name: `${ABS}/f`, body: 'x' }] },
    { name: 'a/../../x', entries: [{ name: 'a/../../x', body: 'x' }] },
    { name: 'symlink to outside, then a file through it', entries: [sym('x', sentinel), { name: 'x/secret', body: 'pwned' }] },
    { name: 'relative symlink climbing out, then x/y', entries: [sym('x', '../../../..'), { name: 'x/sentinel/secret', body: 'pwned' }] },
    { name: 'hard link to ../../etc/passwd', entries: [{ name: 'h', type: 'link', linkname: '../../etc/passwd' }] },
    { name: 'hard link climbing to the sentinel', entries: [{ name: 'h', type: 'link', linkname: '../../../../sentinel/secret' }] },
    { name: 'hard link to a symlink pointing outside', entries: [sym('s', join(sentinel, 'secret')), { name: 'h', type: 'link', linkname: 's' }] },
    { name: 'directory entry through a symlink (tar-fs 3.1.3 chmod bug)', entries: [sym('x', sentinel), { name: 'x', type: 'directory', mode: 0o40777, mtime: new Date(0) }] },
    { name: 'directory below a symlink', entries: [sym('x', sentinel), { name: 'x/sub/', type: 'directory', mode: 0o40777, mtime: new Date(0) }] },
    { name: 'whiteout through a symlink', entries: [sym('x', sentinel), { name: 'x/.wh.secret' }] },
    { name: 'opaque marker through a symlink', entries: [sym('x', sentinel), { name: 'x/.wh..wh..opq' }] },
    { name: 'symlink replaced after its directory was recorded', entries: [{ name: 'd/', type: 'directory', mode: 0o40777, mtime: new Date(0) }, sym('d', sentinel)] },
    { name: 'whiteout named ..', entries: [{ name: 'a/.wh...' }] },
  ];
}

test('unpackLayer rejects or contains hostile archives', async () => {
  for (const c of hostileCases('/placeholder')) {
    await withTmp(async (base) => {
      const { sentinel, target } = await hostileWorld(base);
      const entries = hostileCases(sentinel).find((h) => h.name === c.name)?.entries ?? [];
      const before = await snapshot(base, target);
      const err = await unpackLayer(Readable.from([await makeTar(entries)]), target).then(() => null, (e: unknown) => e);
      if (err !== null) assert.ok(err instanceof SlipwayError && err.code === 'ERR_BAD_ARCHIVE', `${c.name}: ${String(err)}`);
      assert.deepEqual(await snapshot(base, target), before, `${c.name}: something outside the layer changed`);
      assert.ok(!existsSync(ABS), `${c.name}: wrote ${ABS}`);
      if (c.name.startsWith('directory entry through')) {
        assert.equal(err, null);
        assert.ok((await lstat(join(target, 'x'))).isDirectory(), 'the symlink was replaced by a directory');
      } else if (!c.name.startsWith('symlink replaced')) {
        assert.notEqual(err, null, `${c.name} should be rejected`);
      }
    });
  }
});

test('packLayer reads a real overlayfs upper dir (shared whiteouts, opaque dir)', async (t) => {
  await withTmp(async (tmp) => {
    const d = (p: string): string => join(tmp, p);
    for (const p of ['lower/d', 'lower/keep', 'upper', 'work', 'merged', 'back', 'work2']) await mkdir(d(p), { recursive: true });
    await writeFile(d('lower/f1'), 'a');
    await writeFile(d('lower/f2'), 'b');
    await writeFile(d('lower/d/x'), 'c');
    const opts = (lower: string, upper: string, work: string): string =>
      `lowerdir=${lower},upperdir=${upper},workdir=${work},redirect_dir=off,metacopy=off`;
    try {
      execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', opts(d('lower'), d('upper'), d('work')), d('merged')], { stdio: 'ignore' });
    } catch {
      t.skip('overlayfs mounts are not available here');
      return;
    }
    try {
      await rm(d('merged/f1'));
      await rm(d('merged/f2'));
      await rm(d('merged/d'), { recursive: true });
      await mkdir(d('merged/d'));
      await writeFile(d('merged/d/y'), 'new');
    } finally {
      execFileSync('umount', [d('merged')]);
    }
    const { buf } = await packToBuffer(d('upper'));
    const names = (await listTar(buf)).map((h) => h.name);
    // sorted by the on-disk names (d, f1, f2), as Docker renames whiteouts after walking
    assert.deepEqual(names, ['d/', 'd/.wh..wh..opq', 'd/y', '.wh.f1', '.wh.f2']);

    // The unpacked layer, stacked read-only on the lower one, shows the same merged view.
    await unpackLayer(Readable.from([buf]), d('layer'));
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${d('layer')}:${d('lower')}`, d('merged')]);
    try {
      assert.deepEqual((await readdir(d('merged'))).sort(), ['d', 'keep']);
      assert.deepEqual(await readdir(d('merged/d')), ['y']);
    } finally {
      execFileSync('umount', [d('merged')]);
    }
  });
});
