/**
 * Cache-affinity routing and fencing, with three workers behind the farm's access control
 * (see support/farm-cluster.ts). A repeat build goes to the worker that built it; `farm status`
 * shows each worker's hit rate and the share routed by affinity; a worker paused (SIGSTOP) past
 * its lease cannot publish over the worker that took the step over. RUN executions are counted
 * by a server in its own network namespace.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { makeContext, slipway } from '../support/cli.js';
import { FarmCluster } from '../support/farm-cluster.js';
import { countHostMissing, startCountHost, type CountHost } from '../support/count-host.js';
import { buildInfo, followBuild, submitBuild } from '../../src/farm/submit.js';
import type { BuildJobResult } from '../../src/farm/job.js';

const missing = countHostMissing();
const LOCK_SECONDS = 3;
let cluster: FarmCluster;
let count: CountHost;

before(async () => {
  if (missing) return;
  [cluster, count] = await Promise.all([FarmCluster.start(['w1', 'w2', 'w3'], ['--lock-duration', String(LOCK_SECONDS)]), startCountHost()]);
});

after(async () => {
  await cluster?.stop();
  await count?.stop();
});

/** Submits as the operator (straight to Redis) and waits for the result. */
async function run(files: Record<string, string>, opts: { affinity?: boolean } = {}): Promise<{ jobId: string; routedTo: string | undefined; result: BuildJobResult }> {
  const ctx = await makeContext(files);
  cluster.temps.push(ctx);
  const sub = await submitBuild({
    redisUrl: cluster.redis.url, registry: cluster.reg.host, registryCredentials: cluster.credentials('seed'), contextDir: ctx, tags: [], buildArgs: {}, push: false,
    ...(opts.affinity === false ? { affinity: false } : {}),
  });
  const result = await followBuild(cluster.redis.url, sub.jobId, () => undefined);
  return { jobId: sub.jobId, routedTo: sub.routedTo, result };
}

test('affinity: 20 repeats of a build with 3 idle workers go to the worker that built it', { skip: missing }, async () => {
  const name = `aff-${crypto.randomBytes(4).toString('hex')}`;
  const files = { Dockerfile: `FROM busybox\nRUN echo ${name} > /a\nCOPY f /f\nRUN cat /f /a > /b\n`, f: `${name}\n` };
  const first = await run(files);
  assert.ok(first.result.ok, JSON.stringify(first.result));
  assert.equal(first.routedTo, undefined, 'nobody held it yet');
  const home = first.result.worker;
  const landed: string[] = [];
  for (let i = 0; i < 20; i++) {
    const r = await run(files);
    assert.ok(r.result.ok, JSON.stringify(r.result));
    landed.push(r.result.worker);
    // The worker that holds the chain builds it from its local cache.
    if (r.result.worker === home) assert.ok(r.result.steps.every((s) => s.hit && s.source === 'local'), JSON.stringify(r.result.steps));
  }
  const home20 = landed.filter((w) => w === home).length;
  assert.ok(home20 >= 18, `only ${home20}/20 repeats went to ${home}: ${landed.join(' ')}`);
  // Without affinity, any worker may take it (not asserted: random), and the build still succeeds.
  assert.ok((await run(files, { affinity: false })).result.ok);

  const st = await slipway(cluster.seed, ['farm', 'status', '--redis', cluster.redis.url]);
  assert.equal(st.code, 0, st.stderr);
  assert.match(st.stdout, /^Routed by cache affinity: \d+ % of 22 builds submitted$/m);
  assert.match(st.stdout, /WORKER\s+ALIVE\s+BUILDS\s+HIT RATE\s+BY AFFINITY\s+CHAINS HELD/);
  assert.match(st.stdout, new RegExp(`^${home}\\s+yes\\s+\\d+\\s+\\d+ %\\s+\\d+ %\\s+\\d+`, 'm'));
  const json = JSON.parse((await slipway(cluster.seed, ['farm', 'status', '--redis', cluster.redis.url, '--format', 'json'])).stdout);
  assert.equal(json.routing.submitted, 22);
  assert.ok(json.routing.routedShare >= 18 / 22, JSON.stringify(json.routing));
  const w = json.routing.workers.find((x: { name: string }) => x.name === home);
  assert.ok(w.hitRate > 0.8, JSON.stringify(w));
});

test('a routed build whose worker is busy is built by another after the affinity wait', { skip: missing }, async () => {
  const name = `busy-${crypto.randomBytes(4).toString('hex')}`;
  const files = { Dockerfile: `FROM busybox\nRUN echo ${name} > /a\n` };
  const first = await run(files);
  const home = first.result.worker;
  // Keep the home worker busy with a long build routed to it (it shares the first step).
  const ctx = await makeContext({ Dockerfile: `FROM busybox\nRUN echo ${name} > /a\nRUN sleep 6\n` });
  cluster.temps.push(ctx);
  const blocker = await submitBuild({ redisUrl: cluster.redis.url, registry: cluster.reg.host, registryCredentials: cluster.credentials('seed'), contextDir: ctx, tags: [], buildArgs: {}, push: false });
  assert.equal(blocker.routedTo, home);
  const blockerDone = followBuild(cluster.redis.url, blocker.jobId, () => undefined);
  await new Promise((r) => setTimeout(r, 1000));
  const again = await run(files);
  assert.ok(again.result.ok);
  assert.equal(again.routedTo, home);
  assert.notEqual(again.result.worker, home, 'the home worker was busy: another took it after the wait');
  assert.ok((await blockerDone).ok);
  const [info] = await buildInfo(cluster.redis.url, [again.jobId]);
  assert.equal(info?.state, 'completed');
});

test('fencing: a worker paused (SIGSTOP) past its lease cannot publish over the one that took the step over', { skip: missing }, async () => {
  const name = `fence-${crypto.randomBytes(4).toString('hex')}`;
  const ctx = await makeContext({ Dockerfile: `FROM busybox\nRUN wget -q -O- ${count.url}/hit/${name} && sleep 3 && echo ${name} > /f\n` });
  cluster.temps.push(ctx);
  const sub = await submitBuild({ redisUrl: cluster.redis.url, registry: cluster.reg.host, registryCredentials: cluster.credentials('seed'), contextDir: ctx, tags: [], buildArgs: {}, push: false });
  let out = '';
  const followed = followBuild(cluster.redis.url, sub.jobId, (t) => (out += t));
  const t0 = Date.now();
  while (!/Running in/.test(out)) {
    assert.ok(Date.now() - t0 < 30_000, `the step did not start: ${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const [running] = await buildInfo(cluster.redis.url, [sub.jobId]);
  const victim = cluster.workers.get(running?.worker ?? '');
  assert.ok(victim, `taken by ${running?.worker}`);
  victim.child.kill('SIGSTOP');
  let result: BuildJobResult;
  try {
    result = await followed;
  } finally {
    // Woken only once the other worker has published: its late publish must be refused.
    victim.child.kill('SIGCONT');
  }
  assert.ok(result.ok, JSON.stringify(result));
  assert.notEqual(result.worker, victim.name);
  const t1 = Date.now();
  while (!/lost the lease of step/.test(victim.output())) {
    assert.ok(Date.now() - t1 < 30_000, `the paused worker said nothing of its lease:\n${victim.output()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.equal((await count.counts())[name], 2, 'both ran the step; only one published');
  // The one record of the step is the winner's, published under a larger fencing token.
  const keys = execFileSync('redis-cli', ['-p', String(cluster.redis.port), '--scan', '--pattern', 'slipway:t:default:cache:*']).toString().trim().split('\n');
  const records = keys.map((k) => JSON.parse(execFileSync('redis-cli', ['-p', String(cluster.redis.port), 'GET', k]).toString()) as { build: string; worker: string; fence: number });
  const mine = records.filter((r) => r.build === sub.jobId);
  assert.equal(mine.length, 1, JSON.stringify(records));
  assert.equal(mine[0]!.worker, result.worker);
  // The paused worker's build is not completed a second time.
  const [info] = await buildInfo(cluster.redis.url, [sub.jobId]);
  assert.equal(info?.state, 'completed');
  assert.equal(info.result?.worker, result.worker);
});
