/**
 * Named pipes, sockets and device files in a build context never hang a build: inside a copied
 * folder they are skipped (never opened); named directly (a COPY source, the Dockerfile,
 * .dockerignore) they are a one-line error.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { spawn, execFileSync } from 'node:child_process';
import { CLI, makeContext, snapshotTree, storeWithBusybox } from '../support/cli.js';
import { cleanup, request, startServer, tempDir } from '../support/engine-api.js';
import { makeTar } from '../support/tar.js';
import { packContext } from '../../src/context/pack.js';

after(cleanup);

/** The CLI, killed after `ms` (a hang is a failure, not a stuck test run). */
function slipwayWithin(ms: number, root: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string; timedOut: boolean }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [CLI, '--root', root, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => { timedOut = true; c.kill('SIGKILL'); }, ms);
    c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    c.on('close', (code) => { clearTimeout(timer); resolve({ code: code ?? 1, stdout, stderr, timedOut }); });
  });
}

/** A context folder `sub/` holding a.txt and every kind of special file, plus a pipe at the top. */
async function specialContext(dockerfile: string): Promise<{ dir: string; close: () => void }> {
  const dir = await makeContext({ Dockerfile: dockerfile, 'sub/a.txt': 'a\n' });
  execFileSync('mkfifo', [path.join(dir, 'sub', 'pipe'), path.join(dir, 'pipe')]);
  execFileSync('mknod', [path.join(dir, 'sub', 'null'), 'c', '1', '3']);
  const server = net.createServer().listen(path.join(dir, 'sub', 'sock'));
  return { dir, close: () => server.close() };
}

test('COPY of a folder holding a pipe, a socket and a device copies the rest and does not hang', async () => {
  const root = await storeWithBusybox();
  const ctx = await specialContext('FROM busybox\nCOPY sub /sub/\nCOPY . /all/\nRUN ls -A /sub /all/sub\n');
  try {
    const r = await slipwayWithin(30_000, root, ['build', '-t', 'special', ctx.dir]);
    assert.equal(r.timedOut, false, 'the build hung');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\/all\/sub:\na\.txt\n\n\/sub:\na\.txt\n/);
  } finally {
    ctx.close();
  }
});

test('a pipe named as a COPY source, a .dockerignore or a Dockerfile that is a pipe: one line, nothing built', async () => {
  const root = await storeWithBusybox();
  assert.equal((await slipwayWithin(30_000, root, ['build', await makeContext({ Dockerfile: 'FROM busybox\n' })])).code, 0);
  // A build that fails while running records its failure for `stats` (builds/); nothing else may change.
  const store = async () => (await snapshotTree(root)).filter((l) => !l.startsWith('builds'));
  const before = await store();
  const cases: Array<[string, (dir: string) => Promise<void>, string]> = [
    ['COPY pipe', async () => undefined, 'Error: Dockerfile:2: COPY failed: pipe is a named pipe, not a regular file: named pipes, sockets and devices cannot be part of a build'],
    ['COPY by wildcard', async (d) => fs.writeFile(path.join(d, 'Dockerfile'), 'FROM busybox\nADD pip? /p\n'), 'Error: Dockerfile:2: ADD failed: pipe is a named pipe, not a regular file: named pipes, sockets and devices cannot be part of a build'],
    ['COPY a device', async (d) => fs.writeFile(path.join(d, 'Dockerfile'), 'FROM busybox\nCOPY sub/null /n\n'), 'Error: Dockerfile:2: COPY failed: sub/null is a character device, not a regular file: named pipes, sockets and devices cannot be part of a build'],
    ['.dockerignore', async (d) => { execFileSync('mkfifo', [path.join(d, '.dockerignore')]); }, 'Error: .dockerignore is a named pipe, not a regular file: named pipes, sockets and devices cannot be part of a build'],
    ['Dockerfile', async (d) => { await fs.rm(path.join(d, 'Dockerfile')); execFileSync('mkfifo', [path.join(d, 'Dockerfile')]); }, 'Error: Dockerfile is a named pipe, not a regular file: named pipes, sockets and devices cannot be part of a build'],
  ];
  for (const [what, prepare, want] of cases) {
    const ctx = await specialContext('FROM busybox\nCOPY pipe /p\n');
    try {
      await prepare(ctx.dir);
      const r = await slipwayWithin(30_000, root, ['build', '-t', 'special', ctx.dir]);
      assert.equal(r.timedOut, false, `${what}: the build hung`);
      assert.equal(r.code, 1, what);
      assert.equal(r.stderr, `${want}\n`, what);
      assert.deepEqual(await store(), before, `${what}: the store is unchanged`);
    } finally {
      ctx.close();
    }
  }
});

test('the farm\'s context tar leaves special files out without opening them', async () => {
  const ctx = await specialContext('FROM busybox\n');
  try {
    const out = path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-pack-')), 'c.tar');
    await packContext(ctx.dir, out);
    const names = execFileSync('tar', ['-tf', out], { encoding: 'utf8' }).trim().split('\n').sort();
    assert.deepEqual(names, ['.', 'Dockerfile', 'sub', 'sub/a.txt']);
  } finally {
    ctx.close();
  }
});

test('serve: a context tar with pipe and device entries builds; a pipe as .dockerignore is a 400-style error, not a hang', async () => {
  const root = await storeWithBusybox();
  const server = await startServer(root, ['-H', `unix://${path.join(await tempDir('sw-sock-'), 'd.sock')}`]);
  try {
    const entries = [
      { name: 'Dockerfile', body: 'FROM busybox\nCOPY sub /sub/\nRUN ls -A /sub\n' }, { name: 'sub/a.txt', body: 'a\n' },
      { name: 'sub/pipe', type: 'fifo' as const, mode: 0o644 }, { name: 'sub/null', type: 'character-device' as const, devmajor: 1, devminor: 3, mode: 0o666 },
    ];
    const post = (tar: Buffer) => request(server.socket!, { method: 'POST', path: '/v1.41/build?t=special', headers: { 'Content-Type': 'application/x-tar', 'Content-Length': tar.length } }, tar);
    const ok = await post(await makeTar(entries));
    assert.equal(ok.status, 200, ok.body);
    assert.match(ok.body, /a\.txt\\n/);
    assert.match(ok.body, /Successfully tagged special:latest/);
    const bad = await post(await makeTar([...entries, { name: '.dockerignore', type: 'fifo' as const, mode: 0o644 }]));
    assert.match(bad.body, /\.dockerignore is a named pipe, not a regular file/);
  } finally {
    await server.stop();
  }
});
