/**
 * The farm behind Redis Sentinel: a master, a replica and a sentinel (redis-server in sentinel
 * mode), a worker and `submit` given `redis-sentinel://…/farm`. A build completes; the master is
 * killed (SIGKILL) and a build submitted at once waits through the failover; the sentinel
 * promotes the replica, and the same worker, never restarted, completes that build, queued and
 * followed through the new master.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { slipway, storeWithBusybox, makeContext, CLI } from '../support/cli.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { startRedis, startSentinel, type TestRedis } from '../support/redis.js';

const MASTER_NAME = 'farm';
let master: TestRedis;
let replica: TestRedis;
let sentinel: { port: number; stop(): Promise<void> };
let reg: TestRegistry;
let seed: string;
let worker: ChildProcess | undefined;
let workerErr = '';

const cli = (port: number, ...args: string[]) => execFileSync('redis-cli', ['-p', String(port), ...args]).toString().trim();

before(async () => {
  [master, reg] = await Promise.all([startRedis(), startRegistry()]);
  replica = await startRedis(['--replicaof', '127.0.0.1', String(master.port)]);
  // The replica is in sync before the sentinel starts watching.
  for (let i = 0; i < 100 && !/master_link_status:up/.test(cli(replica.port, 'INFO', 'replication')); i++) await new Promise((r) => setTimeout(r, 100));
  sentinel = await startSentinel(MASTER_NAME, master);
  seed = await storeWithBusybox();
  for (const args of [['tag', 'busybox', `${reg.host}/busybox`], ['push', `${reg.host}/busybox`]]) assert.equal((await slipway(seed, args)).code, 0);
});

after(async () => {
  worker?.kill('SIGKILL');
  await sentinel?.stop();
  await replica?.stop();
  await master?.stop();
  await reg?.stop();
});

const url = () => `redis-sentinel://127.0.0.1:${sentinel.port}/${MASTER_NAME}`;

async function startWorker(): Promise<void> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-farm-sentinel-w-'));
  worker = spawn(process.execPath, [CLI, '--root', root, 'worker', '--redis', url(), '--registry', reg.host, '--name', 'ws'], { stdio: ['ignore', 'ignore', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    worker!.stderr!.on('data', (d: Buffer) => {
      workerErr += d.toString();
      if (workerErr.includes('waiting for builds')) resolve();
    });
    worker!.on('exit', (c) => reject(new Error(`worker exited ${c}: ${workerErr}`)));
  });
}

test('a Sentinel failover: the master is killed, the replica promoted, and the farm builds on', async () => {
  await startWorker();
  const files = { Dockerfile: 'FROM busybox\nRUN echo before-the-failover > /a\n' };
  const first = await slipway(seed, ['submit', '--wait', '--redis', url(), '--registry', reg.host, await makeContext(files)]);
  assert.equal(first.code, 0, first.stdout + first.stderr + workerErr);
  await master.kill();
  // Submitted at once, while the sentinel has not yet seen the master down (after 1 s) nor
  // promoted the replica: the producer rides out the failover, asking the sentinels again.
  const second = await slipway(seed, ['submit', '--wait', '--redis', url(), '--registry', reg.host, await makeContext({ Dockerfile: `${files.Dockerfile}RUN echo after > /b\n` })]);
  assert.match(cli(replica.port, 'INFO', 'replication'), /role:master/, 'the replica was promoted');
  assert.equal(second.code, 0, second.stdout + second.stderr + workerErr);
  assert.match(second.stdout, /Step 2\/3 : RUN echo before-the-failover[^]*Using cache/);
  assert.match(second.stdout, /Successfully built/);
  assert.equal(worker!.exitCode, null, 'the worker lived through the failover');
  // The job lives on the promoted replica (the killed master never saw it).
  const id = /Submitted: (b-[0-9a-f]+)/.exec(second.stdout)?.[1];
  assert.ok(id, second.stdout);
  assert.ok(cli(replica.port, '--scan', '--pattern', `slipway:*:${id}`).length > 0, 'the second build was queued on the new master');
});
