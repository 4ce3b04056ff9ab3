/**
 * The farm across hosts: Redis, the registry and a counting server in one network namespace,
 * three workers in three others (veth pairs on a bridge, 10.200.0.0/24, made and deleted here),
 * each with its own --root and nothing shared but the network. Builds run while one worker is
 * killed (-9) in a long step and another is cut off (link down 10 s) in one; every build ends
 * completed exactly once, every cache record's layer in the registry matches its diff id, and
 * RUN executions are counted by the counting server, which each test RUN calls (a step's
 * default network leaves through its worker's namespace, so it reaches the core host).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { createGunzip } from 'node:zlib';
import { Readable } from 'node:stream';
import { execFileSync } from 'node:child_process';
import { makeContext, slipway, storeWithBusybox } from '../support/cli.js';
import { countHostMissing } from '../support/count-host.js';
import { NetnsFarm, CORE_ADDR } from '../support/netns-farm.js';
import { buildInfo, followBuild, submitBuild } from '../../src/farm/submit.js';

const missing = countHostMissing();
let farm: NetnsFarm;
let seed: string;
const temps: string[] = [];

before(async () => {
  if (missing) return;
  farm = new NetnsFarm();
  await farm.start();
  seed = await storeWithBusybox();
  temps.push(seed);
  for (const args of [['tag', 'busybox', `${farm.registry}/busybox`], ['push', '--insecure-registry', farm.registry, `${farm.registry}/busybox`]]) {
    const r = await slipway(seed, args);
    assert.equal(r.code, 0, r.stderr);
  }
  await Promise.all(['w1', 'w2', 'w3'].map((n, i) => farm.startWorker(n, i + 1, ['--lock-duration', '4'])));
});

after(async () => {
  await farm?.stop();
  for (const d of temps) execFileSync('rm', ['-rf', d]);
});

async function submit(dockerfile: string, tag: string): Promise<string> {
  const ctx = await makeContext({ Dockerfile: dockerfile });
  temps.push(ctx);
  return (await submitBuild({ redisUrl: farm.redisUrl, registry: farm.registry, contextDir: ctx, tags: [tag], buildArgs: {}, push: true, affinity: false })).jobId;
}

/** Waits until build `id` runs a step on some worker; returns that worker. */
async function runningOn(id: string, out: () => string): Promise<string> {
  const t0 = Date.now();
  while (!/Running in/.test(out())) {
    assert.ok(Date.now() - t0 < 60_000, `build ${id} did not start: ${out()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const [info] = await buildInfo(farm.redisUrl, [id]);
  assert.ok(info?.worker, `${id} has no worker`);
  return info.worker;
}

test('a step in a worker\'s namespace reaches the counting server in the core namespace', { skip: missing }, async () => {
  const name = `reach-${crypto.randomBytes(3).toString('hex')}`;
  const id = await submit(`FROM busybox\nRUN wget -q -O- ${farm.countUrl}/hit/${name}\n`, 'mh/reach');
  const result = await followBuild(farm.redisUrl, id, () => undefined);
  assert.ok(result.ok, JSON.stringify(result));
  assert.equal((await farm.counts())[name], 1);
  assert.ok(farm.workers.get(result.worker)?.addr.startsWith('10.200.0.'), 'the worker is on its own host');
});

test('builds, kill -9 of one worker and a 10 s partition of another: every build completes once, no corrupt record', { skip: missing }, async () => {
  const tag = crypto.randomBytes(3).toString('hex');
  // The first execution of a long step lingers ('slow'); a retaken one is quick.
  const long = (n: string) => `FROM busybox\nRUN r=$(wget -q -O- ${farm.countUrl}/hit/${n}) && if [ "$r" = slow ]; then sleep 12; fi; echo ${n} > /done\n`;
  const killName = `kill-${tag}`;
  const cutName = `cut-${tag}`;
  const outs = new Map<string, string>();
  const follow = (id: string) => followBuild(farm.redisUrl, id, (t) => outs.set(id, (outs.get(id) ?? '') + t));
  const killId = await submit(long(killName), 'mh/kill');
  const killDone = follow(killId);
  const killer = await runningOn(killId, () => outs.get(killId) ?? '');
  const cutId = await submit(long(cutName), 'mh/cut');
  const cutDone = follow(cutId);
  const cutOff = await runningOn(cutId, () => outs.get(cutId) ?? '');
  assert.notEqual(killer, cutOff);
  // Ordinary builds, sharing a step, queued behind them.
  const shared = `shared-${tag}`;
  const others: string[] = [];
  for (let i = 0; i < 6; i++) {
    others.push(await submit(`FROM busybox\nRUN wget -q -O- ${farm.countUrl}/hit/${shared} > /s\nRUN wget -q -O- ${farm.countUrl}/hit/own-${tag}-${i} > /o\n`, `mh/other${i}`));
  }
  const victim = farm.workers.get(killer)!;
  victim.child.kill('SIGKILL');
  await victim.exited;
  farm.cut(cutOff, true);
  await new Promise((r) => setTimeout(r, 10_000));
  farm.cut(cutOff, false);
  const results = await Promise.all([killDone, cutDone, ...others.map(follow)]);
  for (const r of results) assert.ok(r.ok, JSON.stringify(r));
  assert.notEqual(results[0]!.worker, killer);
  assert.notEqual(results[1]!.worker, cutOff);
  const infos = await buildInfo(farm.redisUrl, [killId, cutId, ...others]);
  for (const info of infos) {
    assert.equal(info?.state, 'completed', JSON.stringify(info));
    assert.ok(info.result?.ok);
  }
  // Independent counts: the interrupted steps ran twice (their first run never published),
  // the shared step once farm-wide, each build's own step once.
  const counts = await farm.counts();
  assert.equal(counts[killName], 2);
  assert.equal(counts[cutName], 2);
  assert.equal(counts[shared], 1);
  for (let i = 0; i < 6; i++) assert.equal(counts[`own-${tag}-${i}`], 1, `own step ${i}`);
  // The cut-off worker published nothing: it was fenced off when it came back, or (when its step
  // ended while it was still cut off) its upload failed first as an infrastructure fault.
  const t0 = Date.now();
  while (!/lost the lease of step|no longer holds build|infrastructure fault/.test(farm.workers.get(cutOff)!.output())) {
    assert.ok(Date.now() - t0 < 30_000, `the cut-off worker was not fenced off:\n${farm.workers.get(cutOff)!.output()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  const records = await checkRecords();
  const cutRecords = records.filter((r) => r.build === cutId);
  assert.ok(cutRecords.length > 0 && cutRecords.every((r) => r.worker === results[1]!.worker), JSON.stringify(cutRecords));
});

/** Every cache record's layer, fetched from the registry, unpacks to the diff id it names. */
async function checkRecords(): Promise<Array<{ build: string; worker: string }>> {
  const keys = execFileSync('redis-cli', ['-h', CORE_ADDR, '--scan', '--pattern', 'slipway:t:*:cache:*']).toString().trim().split('\n').filter(Boolean);
  assert.ok(keys.length >= 8, `only ${keys.length} records`);
  const all: Array<{ build: string; worker: string }> = [];
  for (const k of keys) {
    const rec = JSON.parse(execFileSync('redis-cli', ['-h', CORE_ADDR, 'GET', k]).toString()) as { layerDigest?: string; layerRepo?: string; diffId: string; build: string; worker: string };
    all.push(rec);
    if (!rec.layerDigest) continue;
    const res = await fetch(`http://${farm.registry}/v2/${rec.layerRepo}/blobs/${rec.layerDigest}`);
    assert.equal(res.status, 200, `${k}: ${rec.layerDigest}`);
    const gz = Buffer.from(await res.arrayBuffer());
    assert.equal(`sha256:${crypto.createHash('sha256').update(gz).digest('hex')}`, rec.layerDigest);
    const h = crypto.createHash('sha256');
    for await (const c of Readable.from([gz]).pipe(createGunzip())) h.update(c as Buffer);
    assert.equal(`sha256:${h.digest('hex')}`, rec.diffId, `${k}: corrupt record`);
  }
  return all;
}
