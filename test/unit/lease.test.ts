/**
 * The store's cross-process lease: exclusive while its owner lives, taken over once the owner
 * is gone (kill -9, a pid reused by another process, a heartbeat that stopped), and among many
 * waiters for a dead owner's lease exactly one holds it at a time.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { acquireLease, ownerAlive, type LeaseOwnerJson } from '../../src/store/lease.js';

const LEASE_JS = fileURLToPath(new URL('../../src/store/lease.js', import.meta.url));

function tmp(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'slipway-lease-'));
}

function stat22(pid: number): string {
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return s.slice(s.lastIndexOf(')') + 2).split(' ')[19]!;
}

function ownerRecord(o: Partial<LeaseOwnerJson>): LeaseOwnerJson {
  return {
    pid: process.pid, start: stat22(process.pid), boot: fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(),
    pidns: fs.readlinkSync('/proc/self/ns/pid'), host: os.hostname(), token: 'aaaa', acquired: new Date().toISOString(), ...o,
  };
}

test('an owner is alive while its pid runs with the same start time; a reused pid or a dead one is not', () => {
  assert.equal(ownerAlive(ownerRecord({}), Date.now()), true);
  assert.equal(ownerAlive(ownerRecord({ start: '1' }), Date.now()), false, 'same pid, another process');
  assert.equal(ownerAlive(ownerRecord({ pid: 2 ** 22 + 7 }), Date.now()), false, 'no such pid');
  // Elsewhere (another boot, machine or pid namespace): only the heartbeat says.
  assert.equal(ownerAlive(ownerRecord({ boot: 'other' }), Date.now() - 1000), true);
  assert.equal(ownerAlive(ownerRecord({ boot: 'other' }), Date.now() - 60_000), false);
});

test('a live owner is waited for; its release lets the next one in, or tells it the work is done', async () => {
  const file = path.join(tmp(), 'k.lease');
  const first = await acquireLease(file);
  assert.ok('release' in first);
  let waited: LeaseOwnerJson | undefined;
  let done = false;
  const second = acquireLease(file, { pollMs: 20, onWait: (o) => (waited = o), isDone: async () => done });
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(waited?.pid, process.pid);
  done = true;
  await first.release();
  assert.deepEqual(await second, { done: true });
  const third = await acquireLease(file, { isDone: async () => false });
  assert.ok('release' in third);
  await third.release();
  assert.equal(fs.existsSync(file), false);
});

test('a dead owner\'s lease is taken over; among 8 processes waiting for it, one holds it at a time', async () => {
  const dir = tmp();
  const file = path.join(dir, 'k.lease');
  // A lease left by a process that no longer exists (as after kill -9).
  fs.writeFileSync(file, JSON.stringify(ownerRecord({ pid: 2 ** 22 + 9, token: 'dead' })));
  const log = path.join(dir, 'log');
  const script = `
    import { acquireLease } from ${JSON.stringify(LEASE_JS)};
    import fs from 'node:fs';
    const l = await acquireLease(${JSON.stringify(file)}, { pollMs: 5 });
    fs.appendFileSync(${JSON.stringify(log)}, 'in ' + process.pid + '\\n');
    await new Promise((r) => setTimeout(r, 30));
    fs.appendFileSync(${JSON.stringify(log)}, 'out ' + process.pid + '\\n');
    await l.release();`;
  const children = Array.from({ length: 8 }, () => spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: 'inherit' }));
  const codes = await Promise.all(children.map((c) => new Promise<number | null>((r) => c.on('exit', r))));
  assert.deepEqual(codes, Array(8).fill(0));
  const lines = fs.readFileSync(log, 'utf8').trim().split('\n');
  assert.equal(lines.length, 16);
  for (let i = 0; i < lines.length; i += 2) {
    const [a, b] = [lines[i]!.split(' '), lines[i + 1]!.split(' ')];
    assert.deepEqual([a[0], b[0], a[1]], ['in', 'out', b[1]], `overlapping holders: ${lines.join(', ')}`);
  }
  assert.equal(fs.existsSync(file), false);
  assert.deepEqual(fs.readdirSync(dir).filter((n) => n !== 'log'), [], 'no breaker or temp file left');
});
