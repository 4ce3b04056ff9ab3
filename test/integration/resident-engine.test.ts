/**
 * The resident engine: with `serve` on its root's default socket, `slipway build` hands the
 * build to it and prints the same output. Where a step ran is measured from outside the
 * scheduler: each process logs the layers it packs (SLIPWAY_PACK_LOG), so a step built by the
 * engine shows up in the engine's log and not in the client's.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { buildUntilStepRuns, makeContext, processesMentioning, slipway, snapshotTree, storeWithBusybox, untilEmpty } from '../support/cli.js';
import { cleanup, rawHttp, startServer, tempDir, type Server } from '../support/engine-api.js';

let root: string;
let logs: string;
let server: Server;
const lines = async (f: string) => (await fs.readFile(f, 'utf8').catch(() => '')).split('\n').filter(Boolean);
/** A layer packed by the engine's warm-up build, in a store of its own below the root's tmp folder. */
const isWarmUp = (packed: string) => packed.startsWith(path.join(root, 'graph', '_tmp', 'warm-'));

before(async () => {
  root = await storeWithBusybox();
  logs = await tempDir('sw-engine-logs-');
  server = await startServer(root, [], { SLIPWAY_PACK_LOG: path.join(logs, 'engine.log') });
});

after(async () => {
  await server?.stop();
  await cleanup();
  await fs.rm(root, { recursive: true, force: true });
});

test('serve on the root\'s socket: build runs in the engine, prints what an in-process build prints, and tags', async () => {
  assert.equal(server.socket, path.join(root, 'slipway.sock'));
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nRUN echo resident > /r\nCMD ["cat", "/r"]\n' });
  const client = path.join(logs, 'client.log');
  const viaEngine = await slipway(root, ['build', '-t', 'res:1', ctx], { env: { SLIPWAY_PACK_LOG: client } });
  assert.equal(viaEngine.code, 0, viaEngine.stderr);
  assert.match(viaEngine.stdout, /^Step 1\/3 : FROM busybox\n ---> [0-9a-f]{12}\nStep 2\/3 : RUN echo resident > \/r\n/);
  assert.match(viaEngine.stdout, /Successfully built [0-9a-f]{12}\nSuccessfully tagged res:1\n/);
  assert.deepEqual(await lines(client), [], 'the client packed nothing');
  assert.equal((await lines(path.join(logs, 'engine.log'))).filter((l) => !isWarmUp(l)).length, 1, 'the engine packed the RUN layer');
  assert.deepEqual(await fs.readdir(path.join(root, 'graph', '_tmp')), [], 'no step folder outlives the build');
  // The same build in-process: all cache hits, the same id, the same lines apart from the ids.
  const inProcess = await slipway(root, ['build', '-t', 'res:2', ctx], { env: { SLIPWAY_ENGINE: 'off' } });
  assert.equal(inProcess.code, 0, inProcess.stderr);
  const ids = (s: string) => /Successfully built ([0-9a-f]{12})/.exec(s)?.[1];
  assert.equal(ids(inProcess.stdout), ids(viaEngine.stdout));
  assert.match(inProcess.stdout, / ---> Using cache\n/);
  const images = await slipway(root, ['images', '--format', 'json']);
  assert.match(images.stdout, /"res"/);
  await fs.rm(ctx, { recursive: true, force: true });
});

test('the engine warms up with a build of its own before it listens, and leaves the store as it was', async () => {
  const fresh = await storeWithBusybox();
  const log = path.join(logs, 'warm.log');
  const before = await snapshotTree(fresh);
  const engine = await startServer(fresh, [], { SLIPWAY_PACK_LOG: log });
  const packed = await lines(log);
  assert.ok(packed.length >= 4, `the warm-up's COPY layers were packed: ${packed.join(', ')}`);
  assert.ok(packed.every((l) => l.startsWith(path.join(fresh, 'graph', '_tmp', 'warm-'))), packed.join(', '));
  assert.deepEqual(await fs.readdir(path.join(fresh, 'graph', '_tmp')), [], 'the warm-up store is gone');
  await engine.stop();
  assert.deepEqual(await snapshotTree(fresh), before);
  await fs.rm(fresh, { recursive: true, force: true });
});

test('through the engine, a failing RUN exits with its status and Docker\'s message; -q prints the id only', async () => {
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nRUN exit 3\n' });
  const r = await slipway(root, ['build', ctx]);
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stderr, /The command '\/bin\/sh -c exit 3' returned a non-zero code: 3/);
  await fs.writeFile(path.join(ctx, 'Dockerfile'), 'FROM busybox\nRUN echo q > /q\n');
  const q = await slipway(root, ['build', '-q', ctx]);
  assert.equal(q.code, 0, q.stderr);
  assert.match(q.stdout, /^sha256:[0-9a-f]{64}\n$/);
  await fs.rm(ctx, { recursive: true, force: true });
});

test('a folder is taken as the context only on a socket that only root can open', async () => {
  const body = JSON.stringify({ contextDir: '/etc', tags: [], buildArgs: {}, noCache: false });
  const request = `POST /slipway/v1/local-builds HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
  await fs.chmod(server.socket!, 0o666);
  try {
    const r = await rawHttp({ socket: server.socket! }, request);
    assert.equal(r.status, 403, r.body);
    assert.match(r.body, /only on a unix socket that only root can open/);
  } finally {
    await fs.chmod(server.socket!, 0o660);
  }
});

test('Ctrl-C on a client cancels its build in the engine: the step is killed, nothing is tagged, and the engine serves on', async () => {
  const marker = `sleep-${process.pid}-cancel`;
  const ctx = await makeContext({ Dockerfile: `FROM busybox\nRUN sh -c 'sleep 60; true' ${marker}\n` });
  // The step's own process (its $0 is the marker), seen from outside: the RUN has started in the engine.
  const b = await buildUntilStepRuns(root, ctx, 'cancelled:1', marker);
  const sent = Date.now();
  b.child.kill('SIGINT');
  assert.notEqual(await b.exited, 0, b.output());
  assert.ok(Date.now() - sent < 10_000, 'the client went within 10 s');
  assert.deepEqual(await untilEmpty(() => processesMentioning(marker)), [], 'the engine killed the step');
  // The step ran in a thread of the engine: told to stop, it removed its folder (a thread terminated under it left it).
  assert.deepEqual(await untilEmpty(() => fs.readdir(path.join(root, 'graph', '_tmp'))), [], 'the cancelled step\'s folder is gone');
  const images = await slipway(root, ['images', '--format', '{{.Repository}}']);
  assert.doesNotMatch(images.stdout, /cancelled/);
  await fs.writeFile(path.join(ctx, 'Dockerfile'), 'FROM busybox\nRUN echo after > /after\n');
  const next = await slipway(root, ['build', '-q', ctx]);
  assert.equal(next.code, 0, next.stderr);
  await fs.rm(ctx, { recursive: true, force: true });
});
