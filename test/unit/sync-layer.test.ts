import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FLUSH_MIN_KIB, unwrittenKiB } from '../../src/snapshot/sync-layer.js';

const TMPFS_MAGIC = 0x01021994;

/**
 * What a running step's flush looks at before it syncs (snapshot/sync-layer.ts): the machine's
 * dirty data, which a write raises (and no sync of ours has lowered yet).
 */
test('data written and not yet synced counts as unwritten, past the flush threshold', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slipway-dirty-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  if (fs.statfsSync(dir).type === TMPFS_MAGIC) return t.skip(`${os.tmpdir()} is a tmpfs: its pages are never dirty`);
  const before = unwrittenKiB();
  assert.ok(Number.isFinite(before) && before >= 0, `a figure from /proc/meminfo, not ${before}`);
  // 64 MiB: the kernel writes dirty data back after 30 s, or past 10 % of memory; neither here.
  const chunk = Buffer.alloc(1 << 20, 1);
  const fd = fs.openSync(path.join(dir, 'dirty'), 'w');
  for (let i = 0; i < 64; i++) fs.writeSync(fd, chunk);
  fs.closeSync(fd);
  const after = unwrittenKiB();
  assert.ok(after >= FLUSH_MIN_KIB, `64 MiB written: ${after} KiB dirty`);
  assert.ok(after >= 32 * 1024, `64 MiB written: ${after} KiB dirty`);
});
