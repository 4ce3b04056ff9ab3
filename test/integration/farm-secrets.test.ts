/**
 * `submit --secret` on the farm: the secret reaches the step on the worker (as a file and as an
 * env variable), sealed for the workers' published keys on the way, and its value is found
 * nowhere afterwards: not in Redis (its append-only file holds every write ever made), the
 * registry's storage, the pushed image, the worker's store, or any output.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { slipway, storeWithBusybox, makeContext, CLI } from '../support/cli.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { startRedis, type TestRedis } from '../support/redis.js';
import { filesHolding } from '../support/secret-search.js';

let redis: TestRedis;
let reg: TestRegistry;
let seed: string;
let worker: { child: ChildProcess; root: string; stderr: () => string } | undefined;
const VALUE = `farm-secret-${crypto.randomBytes(12).toString('hex')}`;
const sha = (s: string) => crypto.createHash('sha256').update(s).digest('hex');

before(async () => {
  [redis, reg] = await Promise.all([startRedis(), startRegistry()]);
  seed = await storeWithBusybox();
  for (const args of [['tag', 'busybox', `${reg.host}/busybox`], ['push', `${reg.host}/busybox`]]) assert.equal((await slipway(seed, args)).code, 0);
});

after(async () => {
  worker?.child.kill('SIGKILL');
  await redis?.stop();
  await reg?.stop();
});

async function startWorker(): Promise<void> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-farm-secret-w-'));
  const child = spawn(process.execPath, [CLI, '--root', root, 'worker', '--redis', redis.url, '--registry', reg.host, '--name', 'ws'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  await new Promise<void>((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes('waiting for builds')) resolve();
    });
    child.on('exit', (c) => reject(new Error(`worker exited ${c}: ${err}`)));
  });
  worker = { child, root, stderr: () => err };
}

test('submit --secret: refused while no worker has published a key', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-farm-secret-'));
  await fs.writeFile(path.join(dir, 'tok'), VALUE);
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nRUN true\n' });
  const r = await slipway(seed, ['submit', '--redis', redis.url, '--registry', reg.host, '--secret', `id=tok,src=${path.join(dir, 'tok')}`, ctx]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr.trim(), /^(Error: )?--secret: no farm worker has published a key to seal secrets for \(start a worker first\)$/);
});

test('submit --secret: the step on the worker gets it; Redis, the registry, the image, the store and the logs never see it', async () => {
  await startWorker();
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-farm-secret-'));
  await fs.writeFile(path.join(dir, 'tok'), VALUE);
  const ctx = await makeContext({ Dockerfile: [
    'FROM busybox',
    'RUN --mount=type=secret,id=tok,required sha256sum /run/secrets/tok',
    'RUN --mount=type=secret,id=tok,env=TOKEN sh -c \'printf %s "$TOKEN" | sha256sum\'',
  ].join('\n') + '\n' });
  const r = await slipway(seed, ['submit', '--wait', '--push', '-t', 'sec/app:1', '--redis', redis.url, '--registry', reg.host, '--secret', `id=tok,src=${path.join(dir, 'tok')}`, ctx]);
  assert.equal(r.code, 0, r.stdout + r.stderr + worker!.stderr());
  assert.ok(r.stdout.includes(`${sha(VALUE)}  /run/secrets/tok`), r.stdout);
  assert.ok(r.stdout.includes(`${sha(VALUE)}  -`), 'env=');
  const needle = Buffer.from(VALUE);
  assert.ok(!(r.stdout + r.stderr + worker!.stderr()).includes(VALUE), 'not in any output or log');
  // Redis: the append-only file records every write made, job payloads and logs included.
  await new Promise((res) => setTimeout(res, 200));
  assert.deepEqual(await filesHolding(redis.dir, needle), [], 'not in Redis');
  assert.ok((await filesHolding(redis.dir, Buffer.from('recipients'))).length > 0, 'the search does read the Redis data (the sealed secrets are there)');
  assert.deepEqual(await filesHolding(reg.dir, needle), [], 'not in the registry (context, layers, configs, manifests)');
  assert.deepEqual(await filesHolding(worker!.root, needle), [], 'not in the worker\'s store');
  const pulled = await storeWithBusybox();
  assert.equal((await slipway(pulled, ['pull', `${reg.host}/sec/app:1`])).code, 0);
  assert.deepEqual(await filesHolding(pulled, needle), [], 'not in the pushed image');
});
