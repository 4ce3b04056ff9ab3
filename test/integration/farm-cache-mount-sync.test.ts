/**
 * The farm's cache-mount sharing against a real Redis and registry, below the CLI: a publisher
 * that loses the compare-and-set to another worker rebases onto its version (both workers'
 * files end up published, nothing is lost), a restore keeps this copy's unpublished files and
 * removes only what the farm removed, and a record or tar that was tampered with (an escaping
 * path, content that does not match its digest) is refused with the folder left as it was.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { startRedis, type TestRedis } from '../support/redis.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { connect } from '../../src/farm/connection.js';
import { BlobStore } from '../../src/farm/blobs.js';
import { shareCacheMounts } from '../../src/farm/cache-mount-sync.js';
import { readRecord, removeRecord } from '../../src/farm/cache-mount-record.js';
import { cacheMountKey, type SyncTarget } from '../../src/store/cache-mounts.js';
import { scanTree } from '../../src/snapshot/mount-tree.js';

let redis: TestRedis;
let reg: TestRegistry;
let conn: Redis;
let blobs: BlobStore;

before(async () => {
  [redis, reg] = await Promise.all([startRedis(), startRegistry()]);
  conn = connect(redis.url, 'worker');
  blobs = new BlobStore(reg.host);
});

after(async () => {
  conn?.disconnect();
  await redis?.stop();
  await reg?.stop();
});

/** A fresh instance folder (data + state + scratch) of `tenant`'s mount `id`. */
async function instance(tenant: string, id: string): Promise<SyncTarget> {
  const workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-cm-sync-'));
  await fs.mkdir(path.join(workDir, 'data'));
  return { tenant, id, dir: path.join(workDir, 'data'), stateFile: path.join(workDir, 'farm-sync.json'), workDir };
}

function sharer(r: Redis = conn): { lines: string[]; sync: ReturnType<typeof shareCacheMounts> } {
  const lines: string[] = [];
  return { lines, sync: shareCacheMounts({ redis: r, blobs, capBytes: 0, say: (l) => lines.push(l) }) };
}

async function files(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [rel, e] of Object.entries(await scanTree(dir))) if (e.t === 'f') out[rel] = await fs.readFile(path.join(dir, rel), 'utf8');
  return out;
}

test('a publisher that loses the compare-and-set rebases: both workers\' changes are published', async () => {
  const a = await instance('t1', 'race');
  const b = await instance('t1', 'race');
  await fs.writeFile(path.join(a.dir, 'from-a'), 'A');
  await fs.writeFile(path.join(b.dir, 'from-b'), 'B');
  const sa = sharer();
  // B's Redis lets A publish right before B's compare-and-set: B read version 0, the record is at 1.
  let raced = false;
  const racing = new Proxy(conn, {
    get(target, prop, recv) {
      if (prop === 'eval' && !raced) {
        raced = true;
        return async (...args: unknown[]) => {
          await sa.sync.publish(a);
          return (target.eval as (...x: unknown[]) => Promise<unknown>)(...args);
        };
      }
      const v = Reflect.get(target, prop, recv);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  const sb = sharer(racing);
  await sb.sync.publish(b);
  assert.ok(raced);
  assert.match(sa.lines.join(''), /published version 1/);
  assert.match(sb.lines.join(''), /published version 2 to the farm \(1 files changed/);
  const rec = await readRecord(conn, 't1', cacheMountKey('t1', 'race'));
  assert.deepEqual(Object.keys(rec.entries).sort(), ['from-a', 'from-b']);
  // A third worker gets both; B (behind the farm after its rebase) gets A's file on its next restore.
  const c = await instance('t1', 'race');
  await sharer().sync.restore(c);
  assert.deepEqual(await files(c.dir), { 'from-a': 'A', 'from-b': 'B' });
  const again = sharer();
  await again.sync.restore(b);
  assert.deepEqual(await files(b.dir), { 'from-a': 'A', 'from-b': 'B' });
  assert.match(again.lines.join(''), /restored version 2 from the farm \(1 files fetched/);
});

test('a restore keeps this copy\'s unpublished files and removes only what the farm removed', async () => {
  const a = await instance('t2', 'merge');
  const b = await instance('t2', 'merge');
  await fs.writeFile(path.join(a.dir, 'keep'), 'k');
  await fs.writeFile(path.join(a.dir, 'drop'), 'd');
  await sharer().sync.publish(a);
  await sharer().sync.restore(b);
  assert.deepEqual(await files(b.dir), { keep: 'k', drop: 'd' });
  await fs.rm(path.join(a.dir, 'drop'));
  await sharer().sync.publish(a);
  await fs.writeFile(path.join(b.dir, 'local-only'), 'l');
  await sharer().sync.restore(b);
  assert.deepEqual(await files(b.dir), { keep: 'k', 'local-only': 'l' });
});

test('a tampered record (escaping path) or tar (wrong content) is refused and the folder stays as it was', async () => {
  const a = await instance('t3', 'evil');
  await fs.writeFile(path.join(a.dir, 'x'), 'good');
  await sharer().sync.publish(a);
  const key = `slipway:t:t3:cache-mount:${cacheMountKey('t3', 'evil')}`;
  const manifest = JSON.parse((await conn.hget(key, 'manifest'))!);
  const honest = JSON.stringify(manifest);

  manifest.entries['../../escaped'] = manifest.entries['x'];
  await conn.hset(key, 'manifest', JSON.stringify(manifest), 'version', '5');
  const b = await instance('t3', 'evil');
  await fs.writeFile(path.join(b.dir, 'mine'), 'm');
  const s1 = sharer();
  await s1.sync.restore(b);
  assert.match(s1.lines.join(''), /cache mount evil: not restored from the farm .*malformed: bad entry "..\/..\/escaped"/);
  assert.deepEqual(await files(b.dir), { mine: 'm' });
  await assert.rejects(fs.stat(path.join(b.workDir, '..', 'escaped')));

  // The record says x's content is "evil" (digest of), the tar holds "good".
  const wrong = JSON.parse(honest);
  wrong.entries.x.h = 'e'.repeat(64);
  await conn.hset(key, 'manifest', JSON.stringify(wrong), 'version', '6');
  const s2 = sharer();
  await s2.sync.restore(b);
  assert.match(s2.lines.join(''), /not restored from the farm .*file "x": digest sha256:[0-9a-f]{64} is not the published sha256:e{64}/);
  assert.deepEqual(await files(b.dir), { mine: 'm' });
  assert.deepEqual((await fs.readdir(b.workDir)).sort(), ['data'], 'no staging left behind');
});

test('a mount the farm forgot (farm rm-cache-mount) is published whole again by the next step that changes it', async () => {
  const a = await instance('t4', 'gone');
  await fs.writeFile(path.join(a.dir, 'one'), '1');
  await fs.writeFile(path.join(a.dir, 'two'), '2');
  await sharer().sync.publish(a);
  const key = cacheMountKey('t4', 'gone');
  assert.ok((await removeRecord(conn, 't4', key))! > 0);
  assert.equal(await removeRecord(conn, 't4', key), undefined);
  assert.equal(await conn.get('slipway:t:t4:cache-mount-bytes'), '0');
  await fs.writeFile(path.join(a.dir, 'three'), '3');
  const s = sharer();
  await s.sync.publish(a);
  assert.match(s.lines.join(''), /published version 1 to the farm \(3 files changed/);
  assert.deepEqual(Object.keys((await readRecord(conn, 't4', key)).entries).sort(), ['one', 'three', 'two']);
});
