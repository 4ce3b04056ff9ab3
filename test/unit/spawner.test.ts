import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnViaSpawner, syncfsViaSpawner } from '../../src/sandbox/spawner.js';

/**
 * The native spawner that starts the shims (native/spawner.c through src/sandbox/spawner.ts):
 * what a child gets (fds, signals, stdin) and what comes back (output per stream, fd 3, status).
 */
const SH = '/bin/sh';
const TMPFS_MAGIC = 0x01021994;

function collect(): { out: () => string; err: () => string; fd3: () => string; o: { onStdout: (b: Buffer) => void; onStderr: (b: Buffer) => void; onFd3: (b: Buffer) => void } } {
  let out = '';
  let err = '';
  let fd3 = '';
  return {
    out: () => out, err: () => err, fd3: () => fd3,
    o: { onStdout: (b) => (out += b.toString()), onStderr: (b) => (err += b.toString()), onFd3: (b) => (fd3 += b.toString()) },
  };
}

test('stdout, stderr and fd 3 come back apart, and the exit status after them', async () => {
  const c = collect();
  const p = await spawnViaSpawner([SH, '-c', 'echo out; echo err >&2; echo three >&3; exit 7'], c.o);
  assert.equal(await p.exited, 7);
  assert.equal(c.out(), 'out\n');
  assert.equal(c.err(), 'err\n');
  assert.equal(c.fd3(), 'three\n');
});

test('a child has fds 0-3 only, no ignored or blocked signal, and /dev/null as stdin', async () => {
  const c = collect();
  const p = await spawnViaSpawner([SH, '-c', 'ls /proc/$$/fd; grep -E "^Sig(Ign|Blk)" /proc/self/status; readlink /proc/self/fd/0'], c.o);
  assert.equal(await p.exited, 0);
  const fds = c.out().trim().split('\n').filter((l) => /^\d+$/.test(l)).map(Number);
  assert.deepEqual(fds, [0, 1, 2, 3]);
  assert.match(c.out(), /SigIgn:\s+0+\n/);
  assert.match(c.out(), /SigBlk:\s+0+\n/);
  assert.match(c.out(), /\/dev\/null\n$/);
});

test('a signal reaches the child, and its status says which', async () => {
  const p = await spawnViaSpawner([SH, '-c', 'echo ready >&3; sleep 30'], {});
  p.kill('SIGTERM');
  assert.equal(await p.exited, 128 + 15);
  p.kill('SIGKILL'); // after it is reaped: nothing happens (never a reused pid)
});

test('holdStdin: the child\'s stdin stays open until it is killed', async () => {
  const c = collect();
  const p = await spawnViaSpawner([SH, '-c', 'echo up >&3; cat; echo eof'], { ...c.o, holdStdin: true });
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(c.out(), '', 'cat must still be waiting on stdin');
  p.kill('SIGKILL');
  assert.equal(await p.exited, 128 + 9);
});

test('a missing program is a sandbox error, not an exit status', async () => {
  await assert.rejects(spawnViaSpawner(['/nonexistent/program'], {}), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'ERR_SANDBOX');
    assert.match(e.message, /cannot start the sandbox: cannot start \/nonexistent\/program: No such file or directory/);
    return true;
  });
  await assert.rejects(spawnViaSpawner(['relative'], {}), /bad command/);
});

test('many children at once each get their own output', async () => {
  const ps = await Promise.all(Array.from({ length: 20 }, async (_, i) => {
    const c = collect();
    const p = await spawnViaSpawner([SH, '-c', `echo ${i}; exit ${i}`], c.o);
    return { i, code: await p.exited, out: c.out() };
  }));
  for (const r of ps) {
    assert.equal(r.code, r.i);
    assert.equal(r.out, `${r.i}\n`);
  }
});

test('a long sync holds up neither a child\'s output and exit nor a kill', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slipway-sync-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  if (fs.statfsSync(dir).type === TMPFS_MAGIC) return t.skip(`${os.tmpdir()} is a tmpfs: its syncs write nothing`);
  // 64 MiB left dirty: no disk writes it back in the few milliseconds a child takes.
  const chunk = Buffer.alloc(1 << 20, 7);
  const fd = fs.openSync(path.join(dir, 'dirty'), 'w');
  for (let i = 0; i < 64; i++) fs.writeSync(fd, chunk);
  fs.closeSync(fd);
  const order: string[] = [];
  const synced = syncfsViaSpawner(dir).then(() => order.push('synced'));
  const c = collect();
  const p = await spawnViaSpawner([SH, '-c', 'echo out; exec sleep 30'], c.o);
  await new Promise<void>((resolve) => {
    const poll = setInterval(() => { if (c.out() !== '') { clearInterval(poll); resolve(); } }, 2);
  });
  order.push('output');
  p.kill('SIGKILL');
  assert.equal(await p.exited, 137);
  order.push('exited');
  await synced;
  assert.deepEqual(order, ['output', 'exited', 'synced']);
});

test('the spawner syncs a folder\'s filesystem itself, and says why it cannot', async () => {
  await syncfsViaSpawner('/tmp');
  await assert.rejects(syncfsViaSpawner('/no/such/layer'), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'ERR_INTERNAL');
    assert.match(e.message, /^cannot sync the filesystem of \/no\/such\/layer \(syncfs: No such file or directory\)$/);
    return true;
  });
  // Its children still start and report as before.
  const p = await spawnViaSpawner(['/bin/true']);
  assert.equal(await p.exited, 0);
});
