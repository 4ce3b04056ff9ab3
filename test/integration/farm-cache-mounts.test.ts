/**
 * RUN --mount=type=cache shared across the farm, through `slipway submit --server` with real
 * workers, Redis (ACL-limited) and registry: a mount filled on w1 is restored on w2 (with its
 * deletions, folders and symlinks), a second publish sends only the changed files, tenant bob
 * never sees tenant alice's mount of the same id, `--cache-mount-cap` stops publishing with a
 * line in the build log, `farm status` lists the mount, and `--no-cache-mount-sharing` keeps a
 * worker's mounts to itself.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { makeContext, slipway } from '../support/cli.js';
import { FarmCluster, type FarmProc } from '../support/farm-cluster.js';
import { filesHolding } from '../support/secret-search.js';

let cluster: FarmCluster;
const TOKENS = { alice: `alice-${crypto.randomBytes(12).toString('hex')}`, bob: `bob-${crypto.randomBytes(12).toString('hex')}`, carol: `carol-${crypto.randomBytes(12).toString('hex')}` };
const tokenFiles: Record<string, string> = {};

before(async () => {
  cluster = await FarmCluster.start(['w1', 'w2']);
  await stopWorker('w2');
  await cluster.startServe(Object.entries(TOKENS).map(([t, k]) => `${t} ${k}`));
  const dir = await cluster.tmpDir('tokens');
  for (const [t, k] of Object.entries(TOKENS)) {
    tokenFiles[t] = path.join(dir, t);
    await fs.writeFile(tokenFiles[t]!, k, { mode: 0o600 });
  }
});

after(async () => {
  await cluster?.stop();
});

async function stopWorker(name: string): Promise<void> {
  const w = cluster.workers.get(name)!;
  w.child.kill('SIGTERM');
  await w.exited;
  cluster.workers.delete(name);
  cluster.retired.push(w);
}

/** Submits a Dockerfile as `tenant` and waits; returns the exit code and the build's log. */
async function submit(tenant: keyof typeof TOKENS, dockerfile: string, flags: string[] = []): Promise<{ code: number; out: string }> {
  const ctx = await makeContext({ Dockerfile: dockerfile });
  cluster.temps.push(ctx);
  const r = await slipway(cluster.seed, ['submit', '--server', cluster.serve!.url, '--token-file', tokenFiles[tenant]!, '--wait', ...flags, ctx]);
  return { code: r.code, out: r.stdout + r.stderr };
}

function redisCli(...args: string[]): string {
  return execFileSync('redis-cli', ['-p', String(cluster.redis.port), ...args]).toString().trim();
}

function mountKey(tenant: string, id: string): string {
  return crypto.createHash('sha256').update(`${tenant}\n${id}`).digest('hex').slice(0, 32);
}

/** The published record of a tenant's mount, as Redis holds it. */
function record(tenant: string, id: string): { version: number; blobs: Array<{ digest: string; size: number }>; entries: Record<string, { t: string; h: string; b?: number }> } | undefined {
  const [version, manifest] = redisCli('HMGET', `slipway:t:${tenant}:cache-mount:${mountKey(tenant, id)}`, 'version', 'manifest').split('\n');
  if (!version || !manifest) return undefined;
  return { version: Number(version), ...JSON.parse(manifest) };
}

/** The names inside a blob of the registry's storage. */
async function blobNames(digest: string): Promise<string[]> {
  const hex = digest.slice('sha256:'.length);
  const file = path.join(cluster.reg.dir, 'data', 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data');
  return execFileSync('tar', ['-tf', file]).toString().trim().split('\n').sort();
}

const FILL = 'FROM busybox\nRUN --mount=type=cache,id=deps,target=/cache sh -c \'for i in $(seq 1 50); do echo file-$i > /cache/f$i; done; mkdir -p /cache/sub; echo deep > /cache/sub/x; ln -s f1 /cache/link; echo filled\'\n';

test('a mount filled on w1 is restored on w2; the second publish sends only the changed files', async () => {
  const first = await submit('alice', FILL);
  assert.equal(first.code, 0, first.out);
  assert.match(first.out, /cache mount deps: published version 1 to the farm \(51 files changed, 0 removed/);
  const r1 = record('alice', 'deps')!;
  assert.equal(r1.version, 1);
  assert.equal(r1.blobs.length, 1);
  assert.equal(Object.values(r1.entries).filter((e) => e.t === 'f').length, 51);
  assert.deepEqual({ t: r1.entries['link']!.t, h: r1.entries['link']!.h }, { t: 'l', h: 'f1' });
  assert.equal(r1.entries['sub']!.t, 'd');
  assert.equal((await blobNames(r1.blobs[0]!.digest)).length, 51);

  const second = await submit('alice', 'FROM busybox\nRUN --mount=type=cache,id=deps,target=/cache sh -c \'echo changed > /cache/f2; rm /cache/f3; echo new > /cache/g; echo second\'\n');
  assert.equal(second.code, 0, second.out);
  assert.match(second.out, /published version 2 to the farm \(2 files changed, 1 removed/);
  assert.doesNotMatch(second.out, /restored/, 'w1 is up to date: nothing to restore');
  const r2 = record('alice', 'deps')!;
  assert.equal(r2.blobs.length, 2);
  const delta = r2.blobs.find((b) => b.digest !== r1.blobs[0]!.digest)!;
  assert.deepEqual(await blobNames(delta.digest), ['f2', 'g'], 'the delta holds only the changed files');
  assert.ok(delta.size < r1.blobs[0]!.size / 5, `${delta.size} vs ${r1.blobs[0]!.size}`);
  assert.equal(r2.entries['f3'], undefined, 'the deletion is recorded');

  await stopWorker('w1');
  const w2 = await cluster.startWorker('w2');
  // Lazily: a build that never reaches a step with the mount fetches nothing.
  const untouched = await submit('alice', 'FROM busybox\nRUN echo no mount here\n');
  assert.equal(untouched.code, 0, untouched.out);
  assert.doesNotMatch(untouched.out, /restored/);
  await assert.rejects(fs.readdir(path.join(w2.root, 'tenants', 'alice', 'cache-mounts')), /ENOENT/);
  const third = await submit('alice', 'FROM busybox\nRUN --mount=type=cache,id=deps,target=/cache sh -c \'cat /cache/f1 /cache/f2 /cache/g /cache/sub/x; echo link=$(readlink /cache/link); test -e /cache/f3 || echo f3-gone; ls /cache | wc -l\'\n');
  assert.equal(third.code, 0, third.out);
  assert.match(third.out, /cache mount deps: restored version 2 from the farm \(51 files fetched, \d+ bytes in 2 blobs/);
  for (const want of [/^file-1$/m, /^changed$/m, /^new$/m, /^deep$/m, /^link=f1$/m, /^f3-gone$/m, /^52$/m]) assert.match(third.out, want);
  assert.doesNotMatch(third.out, /published version 3/, 'a step that only reads publishes nothing');
});

test('tenant bob never sees alice\'s mount of the same id', async () => {
  const r = await submit('bob', 'FROM busybox\nRUN --mount=type=cache,id=deps,target=/cache sh -c \'echo bob-count=$(ls -A /cache | wc -l); echo mine > /cache/bob\'\n');
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /^bob-count=0$/m);
  assert.doesNotMatch(r.out, /restored/);
  assert.match(r.out, /published version 1 to the farm \(1 files changed/);
  assert.deepEqual(Object.keys(record('bob', 'deps')!.entries), ['bob']);
  assert.ok(record('alice', 'deps')!.entries['f1'], 'alice\'s record is untouched');
});

test('a secret mounted beside a shared cache mount never reaches the registry or Redis', async () => {
  const value = `cm-secret-${crypto.randomBytes(12).toString('hex')}`;
  const secretFile = path.join(await cluster.tmpDir('secret'), 'tok');
  await fs.writeFile(secretFile, value, { mode: 0o600 });
  const r = await submit('bob', 'FROM busybox\nRUN --mount=type=secret,id=tok,required --mount=type=cache,id=withsecret,target=/cache sh -c \'wc -c < /run/secrets/tok > /cache/length; echo used\'\n', ['--secret', `id=tok,src=${secretFile}`]);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /cache mount withsecret: published version 1/);
  assert.equal(record('bob', 'withsecret')!.entries['length']!.t, 'f');
  await new Promise((res) => setTimeout(res, 200));
  assert.deepEqual(await filesHolding(path.join(cluster.reg.dir, 'data'), Buffer.from(value)), [], 'not in the registry');
  assert.deepEqual(await filesHolding(cluster.redis.dir, Buffer.from(value)), [], 'not in Redis');
  assert.ok((await filesHolding(cluster.redis.dir, Buffer.from('withsecret'))).length > 0, 'the search reads the Redis data');
});

test('farm status lists each shared mount with its tenant, id, size and age', async () => {
  const r = await slipway(cluster.seed, ['farm', 'status', '--redis', cluster.redis.url]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Shared cache mounts:/);
  assert.match(r.stdout, /^alice\s+deps\s+[\d.]+ kB\s+51\s+2\s+(Less than a second|\d+ seconds?) ago$/m);
  assert.match(r.stdout, /^bob\s+deps\s+/m);
  const json = JSON.parse((await slipway(cluster.seed, ['farm', 'status', '--redis', cluster.redis.url, '--format', 'json'])).stdout);
  const alice = json.cacheMounts.find((m: any) => m.tenant === 'alice');
  assert.equal(alice.id, 'deps');
  assert.equal(alice.files, 51);
  assert.ok(alice.bytes > 50 * 1024);
});

test('farm rm-cache-mount forgets a shared mount and its bytes', async () => {
  const before = Number(redisCli('GET', 'slipway:t:bob:cache-mount-bytes'));
  const size = record('bob', 'withsecret')!.blobs.reduce((a, b) => a + b.size, 0);
  const r = await slipway(cluster.seed, ['farm', 'rm-cache-mount', 'bob', 'withsecret', '--redis', cluster.redis.url]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Removed cache mount bob\/withsecret/);
  assert.equal(record('bob', 'withsecret'), undefined);
  assert.equal(Number(redisCli('GET', 'slipway:t:bob:cache-mount-bytes')), before - size);
  const status = await slipway(cluster.seed, ['farm', 'status', '--redis', cluster.redis.url]);
  assert.doesNotMatch(status.stdout, /withsecret/);
  const again = await slipway(cluster.seed, ['farm', 'rm-cache-mount', 'bob', 'withsecret', '--redis', cluster.redis.url]);
  assert.notEqual(again.code, 0);
  assert.match(again.stderr, /the farm has no cache mount "withsecret" of tenant bob/);
});

test('--cache-mount-cap stops publishing past the cap and says so in the build log', async () => {
  await stopWorker('w2');
  const capped: FarmProc = await cluster.startWorker('w1', ['--cache-mount-cap', '64KB']);
  assert.ok(capped);
  const big = await submit('carol', 'FROM busybox\nRUN --mount=type=cache,id=big,target=/cache sh -c \'head -c 200000 /dev/urandom > /cache/blob; echo wrote\'\n');
  assert.equal(big.code, 0, big.out);
  assert.match(big.out, /cache mount big: not published to the farm: the tenant's shared cache mounts would hold 0\.2 MB, over the cap of 0\.1 MB \(worker --cache-mount-cap\)/);
  assert.equal(record('carol', 'big'), undefined);
  const small = await submit('carol', 'FROM busybox\nRUN --mount=type=cache,id=small,target=/cache sh -c \'echo tiny > /cache/t\'\n');
  assert.equal(small.code, 0, small.out);
  assert.match(small.out, /cache mount small: published version 1/);
  assert.equal(redisCli('GET', 'slipway:t:carol:cache-mount-bytes'), String(record('carol', 'small')!.blobs[0]!.size));
});

test('--no-cache-mount-sharing keeps the worker\'s mounts to itself', async () => {
  await stopWorker('w1');
  await cluster.startWorker('w2', ['--no-cache-mount-sharing']);
  const r = await submit('alice', 'FROM busybox\nRUN --mount=type=cache,id=fresh,target=/cache sh -c \'echo x > /cache/x; echo unshared\'\n');
  assert.equal(r.code, 0, r.out);
  assert.doesNotMatch(r.out, /cache mount fresh: published/);
  assert.equal(record('alice', 'fresh'), undefined);
  const bad = await slipway(cluster.seed, ['worker', '--redis', cluster.redis.url, '--registry', cluster.reg.host, '--no-cache-mount-sharing', '--cache-mount-cap', '1GB']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--cache-mount-cap caps shared cache mounts/);
});
