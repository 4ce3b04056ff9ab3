import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { buildUntilStepRuns, processesMentioning, slipway, storeWithBusybox, makeContext, untilEmpty } from '../support/cli.js';

function cachedFlags(out: string): boolean[] {
  const steps: boolean[] = [];
  for (const line of out.split('\n')) {
    if (/^Step \d+\/\d+ : /.test(line)) steps.push(false);
    else if (line === ' ---> Using cache' && steps.length) steps[steps.length - 1] = true;
  }
  return steps;
}

test('same size, mtime set back: the stat cache still sees the new content (never stale)', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nCOPY app.txt /app.txt\nRUN cat /app.txt\n', 'app.txt': 'version-1\n' });
  const file = path.join(ctx, 'app.txt');
  const st = await fs.stat(file);
  const first = await slipway(root, ['build', '-t', 'probe', ctx]);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /version-1/);
  assert.deepEqual(cachedFlags((await slipway(root, ['build', '-t', 'probe', ctx])).stdout), [false, true, true]);
  await fs.writeFile(file, 'version-2\n');
  await fs.utimes(file, st.atime, st.mtime);
  const after = await slipway(root, ['build', '-t', 'probe', ctx]);
  assert.deepEqual(cachedFlags(after.stdout), [false, false, false]);
  assert.match(after.stdout, /version-2/);
  const run = await slipway(root, ['run', 'probe', 'cat', '/app.txt']);
  assert.equal(run.stdout, 'version-2\n');
});

/** A stage `name` whose RUN prints the system uptime as it starts and ends (`name-start`, `name-end`), sleeps, and writes /name. */
const timedStage = (name: string, sleep: number): string =>
  `FROM busybox AS ${name}\nRUN echo "${name}-start $(cut -d" " -f1 /proc/uptime)" && sleep ${sleep} && echo "${name}-end $(cut -d" " -f1 /proc/uptime)" && echo ${name} > /${name}\n`;
/** The uptime a timedStage printed under `key`. */
const uptimeAt = (out: string, key: string): number => Number(new RegExp(`^${key} ([0-9.]+)$`, 'm').exec(out)![1]);

test('independent stages build at the same time, output stays in step order', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({
    Dockerfile: timedStage('a', 1.5) + timedStage('b', 1.5) + 'FROM busybox\nCOPY --from=a /a /a\nCOPY --from=b /b /b\nRUN cat /a /b\n',
  });
  const r = await slipway(root, ['build', '--workers', '2', '-t', 'par', ctx]);
  assert.equal(r.code, 0, r.stderr);
  const numbers = [...r.stdout.matchAll(/^Step (\d+)\/8 : /gm)].map((m) => Number(m[1]));
  assert.deepEqual(numbers, [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.match(r.stdout, /\na\nb\n/);
  // The two RUNs' intervals (system uptime, read inside each sandbox) overlap.
  const t = (k: string) => uptimeAt(r.stdout, k);
  assert.ok(t('a-start') < t('b-end') && t('b-start') < t('a-end'), `stage RUNs overlapped: ${r.stdout}`);
});

test('--workers 1: one step at a time, though a standalone build also runs steps on its own thread', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({ Dockerfile: timedStage('a', 1) + timedStage('b', 1) + 'FROM busybox\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n' });
  const r = await slipway(root, ['build', '--workers', '1', '-t', 'serial', ctx], { env: { SLIPWAY_ENGINE: 'off' } });
  assert.equal(r.code, 0, r.stderr);
  const t = (k: string) => uptimeAt(r.stdout, k);
  assert.ok(t('a-end') <= t('b-start') || t('b-end') <= t('a-start'), `the stage RUNs did not overlap: ${r.stdout}`);
});

test('ADD <url> downloads (0600, named after the URL), COPY of a URL is refused', async () => {
  const server = http.createServer((req, res) => {
    if (req.url === '/files/served.txt') {
      res.writeHead(200, { 'last-modified': 'Wed, 01 Jan 2020 00:00:00 GMT' });
      res.end('served over http\n');
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  try {
    const root = await storeWithBusybox();
    const ctx = await makeContext({ Dockerfile: `FROM busybox\nADD http://127.0.0.1:${port}/files/served.txt /dl/\nRUN stat -c '%a %Y' /dl/served.txt && cat /dl/served.txt\n` });
    const r = await slipway(root, ['build', ctx]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^600 1577836800\nserved over http\n/m);
    const missing = await makeContext({ Dockerfile: `FROM busybox\nADD http://127.0.0.1:${port}/nope /x\n` });
    const m = await slipway(root, ['build', missing]);
    assert.notEqual(m.code, 0);
    assert.match(m.stderr, /Dockerfile:2: ADD failed: error downloading .*404/);
    const copy = await makeContext({ Dockerfile: `FROM busybox\nCOPY http://127.0.0.1:${port}/files/served.txt /x\n` });
    assert.match((await slipway(root, ['build', copy])).stderr, /source can't be a URL for COPY/);
  } finally {
    server.close();
  }
});

test('COPY never reads outside the context: .. is refused, a symlink to / resolves inside the context', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nCOPY escape/etc/hostname /leaked\n', 'etc/hostname': 'inside-context\n' });
  await fs.symlink('/', path.join(ctx, 'escape'));
  const r = await slipway(root, ['build', '-t', 'esc', ctx]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((await slipway(root, ['run', 'esc', 'cat', '/leaked'])).stdout, 'inside-context\n');
  const up = await makeContext({ Dockerfile: 'FROM busybox\nCOPY ../x /x\n' });
  const u = await slipway(root, ['build', up]);
  assert.notEqual(u.code, 0);
  assert.match(u.stderr, /forbidden path outside the build context: \.\.\/x/);
});

test('--no-cache rebuilds every step; the cache survives and is used again afterwards', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nENV A=1\nRUN echo hi > /hi\n' });
  assert.equal((await slipway(root, ['build', ctx])).code, 0);
  // The steps' folders are removed beside later steps, and all of them before the build ends.
  assert.deepEqual(await fs.readdir(path.join(root, 'graph', '_tmp')), [], 'no step folder outlives the build');
  assert.deepEqual(cachedFlags((await slipway(root, ['build', '--no-cache', ctx])).stdout), [false, false, false]);
  assert.deepEqual(cachedFlags((await slipway(root, ['build', ctx])).stdout), [false, true, true]);
});

test('a rebuild from the cache rewrites neither repositories nor the stat cache; a new tag or a changed file does', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nCOPY app.txt /app.txt\n', 'app.txt': 'one\n' });
  const stamp = async (f: string) => { const st = await fs.stat(f, { bigint: true }); return `${st.ino}:${st.mtimeNs}`; };
  const statCache = async () => { const d = path.join(root, 'stat-cache'); return path.join(d, (await fs.readdir(d))[0]!); };
  const repos = path.join(root, 'repositories');
  assert.equal((await slipway(root, ['build', '-t', 'same:1', ctx])).code, 0);
  const [r1, s1] = [await stamp(repos), await stamp(await statCache())];
  const again = await slipway(root, ['build', '-t', 'same:1', ctx]);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /Successfully tagged same:1\n/);
  assert.equal(await stamp(repos), r1, 'repositories untouched');
  assert.equal(await stamp(await statCache()), s1, 'stat cache untouched');
  // Another tag for the same image is written; the first stays.
  assert.equal((await slipway(root, ['build', '-t', 'same:1', '-t', 'same:2', ctx])).code, 0);
  assert.notEqual(await stamp(repos), r1);
  const tags = JSON.parse(await fs.readFile(repos, 'utf8')) as { Repositories: Record<string, Record<string, string>> };
  assert.deepEqual(Object.keys(tags.Repositories['same']!).sort(), ['1', '2']);
  assert.equal(tags.Repositories['same']!['1'], tags.Repositories['same']!['2']);
  // A changed file: the stat cache records it, and the tag moves to the new image.
  await fs.writeFile(path.join(ctx, 'app.txt'), 'two, longer\n');
  assert.equal((await slipway(root, ['build', '-t', 'same:1', ctx])).code, 0);
  assert.notEqual(await stamp(await statCache()), s1);
  const moved = JSON.parse(await fs.readFile(repos, 'utf8')) as { Repositories: Record<string, Record<string, string>> };
  assert.notEqual(moved.Repositories['same']!['1'], tags.Repositories['same']!['1']);
  await fs.rm(root, { recursive: true, force: true });
  await fs.rm(ctx, { recursive: true, force: true });
});

test('Ctrl-C on a standalone build kills its RUN, which runs on the CLI\'s own thread: nothing is tagged, left in graph/_tmp or mounted', async () => {
  const root = await storeWithBusybox();
  const marker = `sleep-${process.pid}-standalone-cancel`;
  const ctx = await makeContext({ Dockerfile: `FROM busybox\nRUN sh -c 'sleep 60; true' ${marker}\n` });
  // The step's own process (its $0 is the marker), seen from outside: the RUN has started.
  const b = await buildUntilStepRuns(root, ctx, 'cancelled:1', marker, { SLIPWAY_ENGINE: 'off' });
  const sent = Date.now();
  b.child.kill('SIGINT');
  assert.notEqual(await b.exited, 0, b.output());
  assert.ok(Date.now() - sent < 10_000, 'the build went within 10 s');
  assert.deepEqual(await processesMentioning(marker), [], 'the step is killed before the CLI exits');
  assert.doesNotMatch((await slipway(root, ['images', '--format', '{{.Repository}}'])).stdout, /cancelled/);
  assert.deepEqual(await fs.readdir(path.join(root, 'graph', '_tmp')), [], 'no scratch folder is left');
  assert.doesNotMatch(await fs.readFile('/proc/self/mountinfo', 'utf8'), new RegExp(root.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')), 'nothing is left mounted');
  await fs.writeFile(path.join(ctx, 'Dockerfile'), 'FROM busybox\nRUN echo after > /after\n');
  const next = await slipway(root, ['build', '-q', ctx], { env: { SLIPWAY_ENGINE: 'off' } });
  assert.equal(next.code, 0, next.stderr);
  await fs.rm(ctx, { recursive: true, force: true });
});

test('kill -9 of a build while the native packer packs its step\'s layer leaves no packer running', async () => {
  const root = await storeWithBusybox();
  // 60,000 files: the packer runs for a second or more after the RUN ends.
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nRUN mkdir /m && cd /m && i=0; while [ $i -lt 60000 ]; do echo $i > f$i; i=$((i+1)); done\n' });
  const build = await buildUntilStepRuns(root, ctx, 'packed', 'slipway-pack');
  build.child.kill('SIGKILL');
  await build.exited;
  // It dies with the spawner that started it, which dies with the build: not a second later.
  assert.deepEqual(await untilEmpty(() => processesMentioning('slipway-pack'), 400), []);
  await fs.rm(root, { recursive: true, force: true });
  await fs.rm(ctx, { recursive: true, force: true });
});
