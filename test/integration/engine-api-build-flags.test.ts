/**
 * The build flags through the real docker CLI (28, legacy builder) against `slipway serve`:
 * --label, --iidfile, --platform, --add-host, --ulimit, --shm-size, --cache-from, --pull, -q,
 * and `-f -` / a context of `-` (which the CLI turns into a context tar). Skipped, with the
 * reason printed, where /usr/local/bin/docker is absent.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { cleanup, docker, dockerEnv, dockerMissing, makeContext, request, startServer, storeWithBusybox, tempDir, DOCKER, type Server } from '../support/engine-api.js';
import { slipway } from '../support/cli.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';

const skip = dockerMissing();
if (skip) console.log(`# skipping Engine API build flag tests: ${skip}`);

let root = '';
let server: Server | undefined;
let env: NodeJS.ProcessEnv = {};
let reg: TestRegistry | undefined;

before(async () => {
  if (skip) return;
  reg = await startRegistry();
  root = await storeWithBusybox();
  server = await startServer(root, ['-H', `unix://${path.join(await tempDir('sw-sock-'), 'd.sock')}`]);
  env = await dockerEnv(server.host);
});

after(async () => {
  await server?.stop();
  await reg?.stop();
  await cleanup();
});

async function ok(args: string[]): Promise<string> {
  const r = await docker(env, args);
  assert.equal(r.code, 0, `docker ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

test('docker build --label --iidfile --platform linux/amd64 -q', { skip }, async () => {
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nRUN echo hi > /hi\n' });
  const iid = path.join(await tempDir('sw-iid-'), 'iid');
  const out = await ok(['build', '-q', '--label', 'team=ci', '--label', 'tier=2', '--iidfile', iid, '--platform', 'linux/amd64', '-t', 'flags:1', ctx]);
  // With -q the docker CLI writes the quiet stream's line (newline included) to the file.
  const id = (await fs.readFile(iid, 'utf8')).trim();
  assert.match(id, /^sha256:[0-9a-f]{64}$/);
  assert.equal(out.trim(), id);
  const iid2 = path.join(path.dirname(iid), 'iid2');
  await ok(['build', '--label', 'team=ci', '--label', 'tier=2', '--iidfile', iid2, ctx]);
  assert.equal(await fs.readFile(iid2, 'utf8'), id);
  assert.equal((await ok(['image', 'inspect', '--format', '{{json .Config.Labels}}', 'flags:1'])).trim(), '{"team":"ci","tier":"2"}');
});

test('docker build --platform linux/arm64 is refused naming the host platform', { skip }, async () => {
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\n' });
  const r = await docker(env, ['build', '--platform', 'linux/arm64', ctx]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /platform linux\/arm64 is not supported: .*host platform linux\/amd64/);
});

test('docker build --add-host --ulimit --shm-size reach the RUN container', { skip }, async () => {
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nRUN grep -e db -e v6 /etc/hosts; echo nofile=$(ulimit -n)/$(ulimit -Hn); df -k /dev/shm | tail -1\n' });
  const out = await ok(['build', '--no-cache', '--add-host', 'db:10.1.2.3', '--add-host', 'v6=fd00::1', '--ulimit', 'nofile=256:512', '--shm-size', '32m', ctx]);
  assert.match(out, /^10\.1\.2\.3\tdb$/m);
  assert.match(out, /^fd00::1\tv6$/m);
  assert.match(out, /^nofile=256\/512$/m);
  assert.match(out, /^shm\s+32768\s/m);
});

test('bad extrahosts and ulimits parameters are a 400 naming the problem', { skip }, async () => {
  const a = await request(server!.socket!, { method: 'POST', path: '/v1.47/build?extrahosts=h:not-an-ip' }, '');
  assert.equal(a.status, 400);
  assert.match(a.body, /invalid IP address/);
  const u = await request(server!.socket!, { method: 'POST', path: `/v1.47/build?ulimits=${encodeURIComponent('[{"Name":"nofile","Soft":10,"Hard":5}]')}` }, '');
  assert.equal(u.status, 400);
  assert.match(u.body, /soft limit/);
});

test('docker build --cache-from an image loaded into the server: every step hits, same id', { skip }, async () => {
  const CHAIN = 'FROM busybox\nENV A=1\nRUN echo one > /one\nRUN echo two > /two\n';
  const other = await storeWithBusybox();
  const ctx = await makeContext({ Dockerfile: CHAIN });
  const id = (await slipway(other, ['build', '-q', '-t', 'cached:1', ctx])).stdout.trim();
  const tarFile = path.join(await tempDir('sw-cf-'), 'cached.tar');
  assert.equal((await slipway(other, ['save', '-o', tarFile, 'cached:1'])).code, 0);
  await ok(['load', '-i', tarFile]);
  const b = await ok(['build', '--cache-from', 'cached:1', '-t', 'cached:2', ctx]);
  assert.equal(b.match(/---> Using cache/g)?.length, 3, b);
  assert.doesNotMatch(b, /Running in/);
  assert.match(b, new RegExp(`Successfully built ${id.slice(7, 19)}`));
});

test('docker build --pull follows a moved tag of a registry base', { skip }, async () => {
  const base = `${reg!.host}/api-pull/base:1`;
  const pusher = await storeWithBusybox();
  for (const v of ['v1', 'v2']) {
    if (v === 'v2') {
      const app = await makeContext({ Dockerfile: `FROM ${base}\nRUN cat /v\n` });
      assert.match(await ok(['build', app]), /^v1$/m);
      assert.match(await ok(['build', app]), /Using cache/);
    }
    const c = await makeContext({ Dockerfile: `FROM busybox\nRUN echo ${v} > /v\n` });
    assert.equal((await slipway(pusher, ['build', '-q', '-t', base, c])).code, 0);
    assert.equal((await slipway(pusher, ['push', base])).code, 0);
  }
  const app = await makeContext({ Dockerfile: `FROM ${base}\nRUN cat /v\n` });
  assert.match(await ok(['build', '--pull', app]), /^v2$/m);
});

test('docker build -f - and docker build - (a tar on stdin)', { skip }, async () => {
  const ctx = await makeContext({ 'data.txt': 'from the context\n' });
  const a = spawnSync(DOCKER, ['build', '-f', '-', ctx], { env, input: 'FROM busybox\nCOPY data.txt /\nRUN cat /data.txt\n', encoding: 'utf8' });
  assert.equal(a.status, 0, a.stderr);
  assert.match(a.stdout, /^from the context$/m);
  const src = await makeContext({ Dockerfile: 'FROM busybox\nCOPY x /x\nRUN cat /x\n', x: 'x-content\n' });
  const tar = execFileSync('tar', ['cf', '-', '-C', src, '.']);
  const b = spawnSync(DOCKER, ['build', '-'], { env, input: tar, encoding: 'utf8' });
  assert.equal(b.status, 0, b.stderr);
  assert.match(b.stdout, /^x-content$/m);
});
