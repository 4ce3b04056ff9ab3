/**
 * native/pack.c packs a step's layer as packLayer does, byte for byte, and leaves to packLayer
 * what needs a PAX header. Compared on copies of one layer folder with every kind of entry.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { packCount, packLayer, packSmallLayer } from '../../src/snapshot/pack.js';
import { finishLayer } from '../../src/snapshot/finish-layer.js';
import { packLayerNative } from '../../src/snapshot/pack-native.js';
import type { IdMapping } from '../../src/sandbox/userns.js';
import { describeTree, makeLayer } from '../support/layer-fixture.js';

const HOST = 1_000_000_000;
const MAPPING: IdMapping = { uid: { host: HOST, count: 65536 }, gid: { host: HOST, count: 65536 } };

/** packLayer's tar and figures, and the native packer's, for two copies of `src` (cp -a: links, xattrs, devices kept). */
async function both(tmp: string, src: string, ownersBack?: IdMapping) {
  const a = path.join(tmp, 'js');
  const b = path.join(tmp, 'native');
  for (const d of [a, b]) execFileSync('cp', ['-a', src, d]);
  const jsTar = path.join(tmp, 'js.tar');
  const nativeTar = path.join(tmp, 'native.tar');
  const js = await packLayer(a, fs.createWriteStream(jsTar), ownersBack ? { ownersBack } : {});
  const native = await packLayerNative(b, nativeTar, ownersBack);
  return { js, native, jsTar: fs.readFileSync(jsTar), nativeTar: fs.existsSync(nativeTar) ? fs.readFileSync(nativeTar) : undefined, a, b };
}

async function withTmp(fn: (tmp: string) => Promise<void>): Promise<void> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'slipway-pack-native-'));
  try {
    await fn(tmp);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * The fixture layer without what needs PAX (a name that is not ASCII, an id above ustar's), plus
 * a big file, and with `hostOwners` a RUN's host owners (above ustar's range until mapped back).
 */
async function plainLayer(tmp: string, hostOwners: boolean): Promise<string> {
  const src = path.join(tmp, hostOwners ? 'src-host' : 'src');
  fs.mkdirSync(src);
  await makeLayer(src);
  fs.rmSync(path.join(src, 'ünïcødé.txt'));
  fs.rmSync(path.join(src, 'srv/big-uid'));
  fs.writeFileSync(path.join(src, 'a/big'), Buffer.alloc(3 * 1024 * 1024 + 17, 7)); // streamed past 1 MiB
  fs.writeFileSync(path.join(src, 'a/empty'), '');
  if (hostOwners) {
    for (const p of ['a', 'a/big', 'bin/su', 'var/cache']) fs.lchownSync(path.join(src, p), HOST, HOST + 5);
    fs.chmodSync(path.join(src, 'bin/su'), 0o4755); // the chown back clears it: both put it back
  }
  fs.utimesSync(path.join(src, 'a/big'), 1_600_000_000, 1_600_000_000);
  return src;
}

test('the native packer writes packLayer\'s tar, diff id, size and layersize, and maps owners back on disk as it does', async () => {
  await withTmp(async (tmp) => {
    for (const mapping of [undefined, MAPPING]) {
      const r = await both(tmp, await plainLayer(tmp, mapping !== undefined), mapping);
      assert.ok(r.native, 'packed natively');
      assert.deepEqual(r.native, { diffId: r.js.diffId, size: r.js.size, layerSize: r.js.layerSize });
      assert.ok(r.nativeTar && Buffer.compare(r.nativeTar, r.jsTar) === 0, 'the same bytes');
      assert.deepEqual(await describeTree(r.b), await describeTree(r.a));
      if (mapping) {
        const su = fs.lstatSync(path.join(r.b, 'bin/su'));
        assert.deepEqual([su.uid, su.gid, su.mode & 0o7777], [0, 5, 0o4755]);
      }
      for (const d of [r.a, r.b]) fs.rmSync(d, { recursive: true, force: true });
    }
  });
});

/**
 * Large folders, which the native packer prepares on two threads (it hands a folder of 64 entries
 * or more to a helper that runs ahead of the walk): every kind of entry among 1,500, a large
 * folder inside a large one, small folders between, hard links across them, and files too large
 * to be read ahead (over 16 KiB), which the walk reads itself.
 */
function wideLayer(tmp: string, hostOwners: boolean): string {
  const src = path.join(tmp, hostOwners ? 'wide-host' : 'wide');
  const owner = (p: string) => { if (hostOwners) fs.lchownSync(p, HOST + 3, HOST + 4); };
  for (const d of ['w', 'w/deep', 'w/m-small', 'w/x-opaque']) fs.mkdirSync(path.join(src, d), { recursive: true });
  for (let i = 0; i < 1500; i++) {
    const p = path.join(src, 'w', `f${String(i).padStart(4, '0')}`);
    const kind = i % 10;
    if (kind === 7) fs.symlinkSync(`../target-${i}`, p);
    else if (i % 50 === 8) execFileSync('mknod', ['-m', '000', p, 'c', '0', '0']); // a whiteout
    else if (kind === 9 && i > 10) fs.linkSync(path.join(src, 'w', `f${String(i - 9).padStart(4, '0')}`), p);
    else fs.writeFileSync(p, Buffer.alloc(kind === 0 ? 0 : kind === 1 ? 40 * 1024 : kind === 2 ? 16 * 1024 : 100 + i, i & 255));
    if (kind === 3) fs.chmodSync(p, 0o6755);
    if (i % 50 !== 8 && kind !== 9) owner(p);
    if (kind === 3) fs.chmodSync(p, 0o6755); // lchown cleared it: a RUN's set-id file, owned by its host ids
  }
  for (let i = 0; i < 200; i++) fs.writeFileSync(path.join(src, 'w/deep', `d${i}`), `deep ${i}\n`);
  fs.linkSync(path.join(src, 'w/deep/d5'), path.join(src, 'w/m-small/link-to-deep'));
  fs.writeFileSync(path.join(src, 'w/m-small/one'), 'one');
  execFileSync('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', path.join(src, 'w/x-opaque')]);
  for (const d of ['w', 'w/deep', 'w/m-small', 'w/x-opaque']) owner(path.join(src, d));
  return src;
}

test('large folders, prepared on two threads, give packLayer\'s bytes, figures and owners', async () => {
  await withTmp(async (tmp) => {
    for (const mapping of [undefined, MAPPING]) {
      const r = await both(tmp, wideLayer(tmp, mapping !== undefined), mapping);
      assert.ok(r.native, 'packed natively');
      assert.deepEqual(r.native, { diffId: r.js.diffId, size: r.js.size, layerSize: r.js.layerSize });
      assert.ok(r.nativeTar && Buffer.compare(r.nativeTar, r.jsTar) === 0, 'the same bytes');
      const [a, b] = [await describeTree(r.a), await describeTree(r.b)];
      assert.deepEqual(b, a);
      if (mapping) {
        assert.deepEqual(b.filter((e) => (e['uid'] as number) >= HOST || (e['gid'] as number) >= HOST), [], 'every owner mapped back');
        // All but the 30 whiteouts and f0009 (a file, not owned); a link has its inode's owner; 4 folders.
        assert.equal(b.filter((e) => e['uid'] === 3 && e['gid'] === 4).length, 1500 - 30 - 1 + 4, 'the RUN\'s owner, as the container saw it');
        assert.equal(b.filter((e) => e['mode'] === 0o6755).length, 150, 'set-id bits put back');
      }
      for (const d of [r.a, r.b]) fs.rmSync(d, { recursive: true, force: true });
    }
  });
});

test('a layer that needs a PAX header is left to packLayer, which packs it whole', async () => {
  await withTmp(async (tmp) => {
    for (const odd of ['ünïcødé.txt', `${'n'.repeat(101)}`]) {
      const src = path.join(tmp, 'src');
      fs.mkdirSync(src);
      fs.writeFileSync(path.join(src, 'plain'), 'x');
      fs.writeFileSync(path.join(src, odd), 'y');
      const tar = path.join(tmp, 'n.tar');
      assert.equal(await packLayerNative(src, tar, undefined), undefined, odd);
      fs.rmSync(src, { recursive: true });
    }
    const big = path.join(tmp, 'big-id');
    fs.mkdirSync(big);
    fs.writeFileSync(path.join(big, 'f'), 'x');
    fs.lchownSync(path.join(big, 'f'), 300000, 0);
    assert.equal(await packLayerNative(big, undefined, undefined), undefined, 'uid above 0777777');
  });
});

test('a layer folder that cannot be read fails the pack with the packer\'s own message', async () => {
  await withTmp(async (tmp) => {
    await assert.rejects(packLayerNative(path.join(tmp, 'missing'), undefined, undefined), /packing .*missing failed: slipway-pack: cannot open .*No such file/);
  });
});

test('a step\'s layer: packed here up to 128 entries, natively above, the same either way; an attempt over budget counts no pack', async () => {
  await withTmp(async (tmp) => {
    for (const n of [10, 300]) {
      const dir = path.join(tmp, `l${n}`);
      fs.mkdirSync(path.join(dir, 'd'), { recursive: true });
      for (let i = 0; i < n; i++) fs.writeFileSync(path.join(dir, 'd', `f${i}`), `file ${i}\n`);
      const copy = `${dir}-copy`;
      execFileSync('cp', ['-a', dir, copy]);
      const before = packCount();
      const small = await packSmallLayer(dir, 128);
      assert.equal(small === undefined, n > 128, `${n} entries`);
      assert.equal(packCount(), before + (small ? 1 : 0));
      const finished = await finishLayer(copy);
      assert.equal(finished.diffId, (await packLayer(dir, null)).diffId);
    }
  });
});
