/**
 * The `slipway` command's native front (native/client.c): a plain build on a root whose engine
 * is up goes to the engine with no Node.js process; anything else runs the Node.js CLI. That no
 * Node.js ran is seen from outside: the front is run with a PATH that has no `node`, where
 * handing over fails (127). What it prints is compared with what the Node.js client prints
 * for the same builds.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { buildUntilStepRuns, makeContext, pathWithout, processesMentioning, runProcess, slipway, storeWithBusybox, untilEmpty } from '../support/cli.js';
import { cleanup, startServer, type Server } from '../support/engine-api.js';

const NATIVE = fileURLToPath(new URL('../../native/slipway', import.meta.url));
let root: string;
let server: Server;
let noNode: string;
/** The front's environment: no `node` on PATH, unless `withNode` (then this test's own Node.js first). */
const env = (extra: NodeJS.ProcessEnv = {}, withNode = false): NodeJS.ProcessEnv => ({
  ...process.env, PATH: withNode ? `${path.dirname(process.execPath)}:${process.env['PATH']}` : noNode, ...extra,
});
const front = (args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}) =>
  runProcess(NATIVE, ['--root', root, ...args], { env: opts.env ?? env(), ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}) });
/** Container ids differ between two runs of the same failing step. */
const ids = (s: string) => s.replace(/Running in [0-9a-f]{12}/g, 'Running in <id>');

before(async () => {
  root = await storeWithBusybox();
  server = await startServer(root, []);
  noNode = await pathWithout(['node', 'nodejs']);
});

after(async () => {
  await server?.stop();
  await cleanup();
  await fs.rm(root, { recursive: true, force: true });
  await fs.rm(noNode, { recursive: true, force: true });
});

test('with the engine up, the front builds without Node.js and prints what the Node.js client prints', async () => {
  assert.equal(server.socket, path.join(root, 'slipway.sock'));
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nARG WHO\nRUN echo "hello $WHO" > /h && cat /h\nCMD ["cat", "/h"]\n' });
  const cold = await front(['build', '-t', 'front:1', '--build-arg', 'WHO=front', ctx]);
  assert.equal(cold.code, 0, cold.stderr);
  assert.match(cold.stdout, /\nhello front\n/);
  assert.match(cold.stdout, /Successfully built [0-9a-f]{12}\nSuccessfully tagged front:1\n/);
  // Warm, both clients: the same bytes on both streams, the same status.
  const viaFront = await front(['build', '-t', 'front:2', '--build-arg', 'WHO=front', ctx]);
  const viaNode = await slipway(root, ['build', '-t', 'front:2', '--build-arg', 'WHO=front', ctx]);
  assert.equal(viaFront.code, 0, viaFront.stderr);
  assert.deepEqual(viaFront, { ...viaNode }, 'the same output as the Node.js client');
  assert.match(viaFront.stdout, / ---> Using cache\n/);
  const quiet = await front(['build', '-q', ctx]);
  assert.deepEqual(quiet, await slipway(root, ['build', '-q', ctx]));
  assert.match(quiet.stdout, /^sha256:[0-9a-f]{64}\n$/);
  const images = await slipway(root, ['images', '--format', '{{.Repository}}:{{.Tag}}']);
  assert.match(images.stdout, /^front:2$/m);
  await fs.rm(ctx, { recursive: true, force: true });
});

test('through the front, a failing RUN and a bad Dockerfile fail as through the Node.js client', async () => {
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nRUN echo out; echo err >&2; exit 3\n' });
  const viaFront = await front(['build', ctx]);
  const viaNode = await slipway(root, ['build', ctx]);
  assert.equal(viaFront.code, 3, viaFront.stderr);
  assert.match(viaFront.stderr, /The command '\/bin\/sh -c echo out; echo err >&2; exit 3' returned a non-zero code: 3/);
  assert.deepEqual({ ...viaFront, stdout: ids(viaFront.stdout) }, { ...viaNode, stdout: ids(viaNode.stdout) });
  await fs.writeFile(path.join(ctx, 'Dockerfile'), 'FROM busybox\nRUNN nothing\n');
  const bad = await front(['build', ctx]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /Dockerfile:2/);
  assert.deepEqual(bad, await slipway(root, ['build', ctx]));
  await fs.rm(ctx, { recursive: true, force: true });
});

test('the front resolves the context and -f against its folder as the Node.js CLI does, and takes a bare --build-arg from its environment', async () => {
  const ctx = await makeContext({ 'marker.txt': 'in the context\n' });
  const other = await makeContext({ 'Df.build': 'FROM busybox\nARG FROM_ENV\nCOPY marker.txt /m\nRUN echo "arg=$FROM_ENV" && cat /m\n' });
  // From `other`: the context as ../<ctx>/./ and the Dockerfile beside us (outside the context).
  const rel = path.join('..', path.basename(ctx), '.') + '/';
  const r = await front(['build', '-f', 'Df.build', '--build-arg', 'FROM_ENV', '--no-cache', rel], { cwd: other, env: env({ FROM_ENV: 'from the environment' }) });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Step 3\/4 : COPY marker.txt \/m\n/);
  assert.match(r.stdout, /\narg=from the environment\nin the context\n/);
  // Unset, a bare --build-arg is no argument at all (the ARG has no value).
  const unset = await front(['build', '-f', 'Df.build', '--build-arg', 'FROM_ENV', '--no-cache', rel], { cwd: other });
  assert.match(unset.stdout, /\narg=\nin the context\n/);
  await fs.rm(ctx, { recursive: true, force: true });
  await fs.rm(other, { recursive: true, force: true });
});

test('what the front does not handle, the Node.js CLI does: no engine, an unknown flag, a bad tag, --debug', async () => {
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nRUN echo handed > /x\n' });
  // Without node on PATH, handing over fails: that is how each case shows it went to Node.js.
  const noHand = await front(['build', '--bogus', ctx]);
  assert.equal(noHand.code, 127);
  assert.match(noHand.stderr, /slipway: cannot run node/);
  const unknown = await front(['build', '--bogus', ctx], { env: env({}, true) });
  assert.deepEqual(unknown, await slipway(root, ['build', '--bogus', ctx]));
  assert.equal(unknown.code, 125);
  assert.match(unknown.stderr, /unknown flag: --bogus/);
  const badTag = await front(['build', '-t', 'Bad:Tag', ctx], { env: env({}, true) });
  assert.equal(badTag.code, 1);
  assert.match(badTag.stderr, /invalid reference format/);
  assert.equal((await front(['build', '-t', 'Bad:Tag', ctx])).code, 127, 'the engine refused it, and the front handed it over');
  assert.equal((await front(['--debug', 'build', ctx])).code, 127);
  assert.equal((await front(['build', ctx], { env: env({ SLIPWAY_ENGINE: 'off' }) })).code, 127);
  // No engine on this root: an in-process build, by the Node.js CLI.
  const other = await storeWithBusybox();
  const inProcess = await runProcess(NATIVE, ['--root', other, 'build', '-t', 'handed:1', ctx], { env: env({}, true) });
  assert.equal(inProcess.code, 0, inProcess.stderr);
  assert.match(inProcess.stdout, /Successfully tagged handed:1\n/);
  assert.equal((await runProcess(NATIVE, ['--root', other, 'build', ctx], { env: env() })).code, 127);
  await fs.rm(other, { recursive: true, force: true });
  await fs.rm(ctx, { recursive: true, force: true });
});

test('Ctrl-C on the front cancels its build in the engine: the step is killed, nothing is tagged or left in graph/_tmp', async () => {
  const marker = `sleep-${process.pid}-front`;
  const ctx = await makeContext({ Dockerfile: `FROM busybox\nRUN sh -c 'sleep 60; true' ${marker}\n` });
  const b = await buildUntilStepRuns(root, ctx, 'cancelled:front', marker, { PATH: noNode }, [NATIVE]);
  b.child.kill('SIGINT');
  assert.equal(await b.exited, 1, b.output());
  assert.match(b.output(), /Error: build cancelled\n$/);
  assert.deepEqual(await untilEmpty(() => processesMentioning(marker)), [], 'the engine killed the step');
  assert.deepEqual(await untilEmpty(() => fs.readdir(path.join(root, 'graph', '_tmp'))), [], 'the cancelled step\'s folder is gone');
  const images = await slipway(root, ['images', '--format', '{{.Repository}}']);
  assert.doesNotMatch(images.stdout, /cancelled/);
  await fs.rm(ctx, { recursive: true, force: true });
});

test('a reader that goes away does not stop the build: it completes and is tagged', async () => {
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nRUN seq 1 20000\n' });
  const c = spawn(NATIVE, ['--root', root, 'build', '-t', 'headless:1', ctx], { env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
  c.stdout.destroy();
  const code = await new Promise<number | null>((resolve) => c.on('exit', resolve));
  assert.equal(code, 0);
  const images = await slipway(root, ['images', '--format', '{{.Repository}}:{{.Tag}}']);
  assert.match(images.stdout, /^headless:1$/m);
  await fs.rm(ctx, { recursive: true, force: true });
});

test('a socket another user made at <root>/slipway.sock is not taken for the engine: both clients build in-process and never connect', async () => {
  const other = await storeWithBusybox();
  const sock = path.join(other, 'slipway.sock');
  let connections = 0;
  const fake = net.createServer((c) => { connections++; c.destroy(); });
  await new Promise<void>((resolve) => fake.listen(sock, resolve));
  try {
    await fs.chown(sock, 65534, 65534);
    const ctx = await makeContext({ Dockerfile: 'FROM busybox\nRUN echo in-process > /p\n' });
    const viaFront = await runProcess(NATIVE, ['--root', other, 'build', '-t', 'notfake:1', ctx], { env: env({}, true) });
    assert.equal(viaFront.code, 0, viaFront.stderr);
    assert.match(viaFront.stdout, /Successfully tagged notfake:1\n/);
    const viaNode = await slipway(other, ['build', '-t', 'notfake:2', ctx]);
    assert.equal(viaNode.code, 0, viaNode.stderr);
    assert.equal(connections, 0, 'neither client connected to the socket');
    // The same socket owned by root is an engine to both (here, one that hangs up: the front hands over, the Node.js client fails).
    await fs.chown(sock, 0, 0);
    await slipway(other, ['build', ctx]);
    assert.ok(connections > 0, 'a root-owned socket is tried');
    await fs.rm(ctx, { recursive: true, force: true });
  } finally {
    await new Promise<void>((resolve) => fake.close(() => resolve()));
    await fs.rm(other, { recursive: true, force: true });
  }
});

test('the package\'s bin is the Node.js CLI, which anything may run with node; the front is not it', async () => {
  const pkgFile = fileURLToPath(new URL('../../../package.json', import.meta.url));
  const bin = (JSON.parse(readFileSync(pkgFile, 'utf8')) as { bin: Record<string, string> }).bin['slipway']!;
  const r = await runProcess(process.execPath, [path.join(path.dirname(pkgFile), bin), '--root', root, 'tag', 'Bad_Name:1', 'x:y'], { env: env({}, true) });
  assert.equal(r.code, 1);
  assert.equal(r.stderr, 'Error: No such image: Bad_Name:1\n', 'one line, no stack trace');
});
