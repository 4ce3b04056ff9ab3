import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { slipway, storeWithBusybox, makeContext, CLI } from '../support/cli.js';
import { startRegistry, freePort, type TestRegistry } from '../support/registry.js';
import { startRedis, type TestRedis } from '../support/redis.js';
import { buildInfo, followBuild, submitBuild, type BuildInfo } from '../../src/farm/submit.js';
import type { BuildJobResult, FarmStep } from '../../src/farm/job.js';

/**
 * The build farm end to end: a private redis-server and docker-registry, three `slipway worker`
 * processes (each its own --root, a 4 s job lock so a dead worker's job is retaken quickly), and
 * builds submitted through the CLI or `submitBuild`. One set serves every test, in order; every
 * process is killed in `after`, whatever happened.
 */

interface WorkerProc { name: string; root: string; metricsPort: number; child: ChildProcess; stderr: () => string; exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> }

let redis: TestRedis;
let reg: TestRegistry;
let seed: string;
const workers = new Map<string, WorkerProc>();
/** Workers killed on purpose (their output is kept for SLIPWAY_TEST_LOGS). */
const retired: WorkerProc[] = [];
const children = new Set<ChildProcess>();
const temps: string[] = [];
const LOCK_SECONDS = 4;
// A crashed run must not leave workers behind either (redis and the registry have their own hook).
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

before(async () => {
  [redis, reg] = await Promise.all([startRedis(), startRegistry()]);
  seed = await storeWithBusybox();
  temps.push(seed);
  // Workers pull a FROM image they lack from the farm's registry as `<registry>/<name>`.
  for (const args of [['tag', 'busybox', `${reg.host}/busybox`], ['push', `${reg.host}/busybox`]]) {
    const r = await slipway(seed, args);
    assert.equal(r.code, 0, r.stderr);
  }
  await Promise.all(['w1', 'w2', 'w3'].map(async (name) => startWorker(name, await tmpDir(`root-${name}`))));
});

after(async () => {
  // SLIPWAY_TEST_LOGS=1 shows what the workers said (their stderr), for a failure in CI.
  if (process.env['SLIPWAY_TEST_LOGS']) for (const w of retired.concat([...workers.values()])) process.stderr.write(`--- ${w.name}\n${w.stderr()}\n`);
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await Promise.all([...workers.values()].map((w) => w.exited));
  await redis?.stop();
  await reg?.stop();
  for (const d of temps) await fs.rm(d, { recursive: true, force: true });
});

async function tmpDir(label: string): Promise<string> {
  const d = await fs.mkdtemp(path.join(os.tmpdir(), `slipway-farm-${label}-`));
  temps.push(d);
  return d;
}

/** The file a worker logs its layer packs to. */
function packLog(name: string): string {
  return path.join(os.tmpdir(), `slipway-farm-packs-${process.pid}-${name}.log`);
}

/** Spawns `slipway worker` and resolves once it waits for builds. */
async function startWorker(name: string, root: string): Promise<WorkerProc> {
  const metricsPort = await freePort();
  const child = spawn(process.execPath, [CLI, '--root', root, 'worker', '--redis', redis.url, '--registry', reg.host, '--name', name,
    '--lock-duration', String(LOCK_SECONDS), '--metrics-port', String(metricsPort), '--shutdown-timeout', '10'],
  // Every layer a worker packs is logged (one line each), counted from outside the scheduler.
  { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, SLIPWAY_PACK_LOG: packLog(name) } });
  children.add(child);
  let err = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('exit', (code, signal) => r({ code, signal })));
  const ready = new Promise<void>((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes('waiting for builds')) resolve();
    });
    void exited.then(({ code, signal }) => reject(new Error(`worker ${name} exited (${code ?? signal}) before it was ready:\n${err}`)));
  });
  await ready;
  const w: WorkerProc = { name, root, metricsPort, child, stderr: () => err, exited };
  workers.set(name, w);
  return w;
}

function farm(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return slipway(seed, [...args, '--redis', redis.url]);
}

/** `submit` through the CLI, its stdout read as it arrives (each chunk stamped with the time it came). */
function submitCli(ctx: string, args: string[]): { chunks: Array<{ at: number; text: string }>; stdout: () => string; stderr: () => string; done: Promise<number> } {
  const child = spawn(process.execPath, [CLI, '--root', seed, 'submit', '--redis', redis.url, '--registry', reg.host, ...args, ctx], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const chunks: Array<{ at: number; text: string }> = [];
  let err = '';
  child.stdout.on('data', (d: Buffer) => chunks.push({ at: Date.now(), text: d.toString() }));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const done = new Promise<number>((r) => child.on('exit', (code) => r(code ?? 1)));
  return { chunks, stdout: () => chunks.map((c) => c.text).join(''), stderr: () => err, done };
}

/** Polls until every build is finished (completed or failed); returns what the queue knows. */
async function waitForBuilds(ids: string[], timeoutMs: number): Promise<BuildInfo[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const infos = await buildInfo(redis.url, ids).catch(() => undefined);
    if (infos?.every((i) => i && (i.state === 'completed' || i.state === 'failed'))) return infos as BuildInfo[];
    if (Date.now() > deadline) {
      const logs = [...workers.values()].map((w) => `--- ${w.name}\n${w.stderr()}`).join('\n');
      assert.fail(`builds not finished after ${timeoutMs} ms: ${JSON.stringify(infos?.map((i) => i && { id: i.id, state: i.state }))}\n${logs}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

function okResult(info: BuildInfo): Extract<BuildJobResult, { ok: true }> {
  assert.equal(info.state, 'completed', `${info.id}: ${info.failedReason ?? ''}`);
  assert.ok(info.result?.ok, `${info.id}: ${JSON.stringify(info.result)}`);
  return info.result;
}

/** The registry serves a manifest for `repo:tag`. */
async function inRegistry(repo: string, tag = 'latest'): Promise<boolean> {
  const res = await fetch(`http://${reg.host}/v2/${repo}/manifests/${tag}`, {
    method: 'HEAD',
    headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json' },
  });
  return res.status === 200;
}

const stepOf = (r: BuildJobResult, prefix: string): FarmStep[] => r.steps.filter((s) => s.text.startsWith(prefix));

test('submit --wait streams progress live, a second submit of the same inputs joins the first, farm status shows the queue and workers', async () => {
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nRUN echo live && sleep 4\nRUN echo done > /done\n' });
  temps.push(ctx);
  const args = ['--push', '-t', 'farm/live'];
  const first = submitCli(ctx, ['--wait', ...args]);
  const started = Date.now();
  // Wait for the first step line, then submit the same inputs again while the build runs.
  while (!first.stdout().includes('Step 1/3')) {
    assert.ok(Date.now() - started < 30_000, `no progress: ${first.stdout()}\n${first.stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const firstStepAt = first.chunks.find((c) => c.text.includes('Step 1/3'))!.at;
  const id = /Submitted: (b-[0-9a-f]+)/.exec(first.stdout())?.[1];
  assert.ok(id, first.stdout());
  const again = await slipway(seed, ['submit', '--redis', redis.url, '--registry', reg.host, ...args, ctx]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.stdout.trim(), `Already queued: ${id}`);

  const status = await farm(['farm', 'status']);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /^Queue: \d+ waiting, 1 running, /m);
  assert.match(status.stdout, /^Workers: 3$/m);
  for (const n of ['w1', 'w2', 'w3']) assert.match(status.stdout, new RegExp(`^${n} `, 'm'));
  assert.match(status.stdout, new RegExp(`^${id} +farm/live`, 'm'));

  const code = await first.done;
  const finishedAt = Date.now();
  assert.equal(code, 0, `${first.stdout()}\n${first.stderr()}`);
  const out = first.stdout();
  // The first step arrived while the RUN still slept: live, not dumped at the end.
  assert.ok(finishedAt - firstStepAt >= 3000, `first step line ${finishedAt - firstStepAt} ms before the end`);
  assert.ok(out.indexOf('Step 1/3') < out.indexOf('Step 2/3') && out.indexOf('Step 2/3') < out.indexOf('Step 3/3'), out);
  assert.match(out, /^live$/m);
  assert.match(out, new RegExp(`^Build ${id} succeeded on w[123]: sha256:[0-9a-f]{64}$`, 'm'));
  assert.match(out, new RegExp(`^Pushed ${reg.host.replace(/\./g, '\\.')}/farm/live sha256:[0-9a-f]{64}$`, 'm'));
  assert.ok(await inRegistry('farm/live'));
  const [info] = await buildInfo(redis.url, [id]);
  assert.equal(info?.attemptsStarted, 1, 'the second submit did not start another build');
});

test('10 builds of 4 Dockerfiles complete and are pushed; the step they share runs once farm-wide', async () => {
  for (const n of ['w1', 'w2', 'w3']) await fs.rm(packLog(n), { force: true });
  const common = 'RUN echo shared > /shared && sleep 2';
  const dockerfiles: Record<string, string> = {
    a: `FROM busybox\n${common}\nCOPY a.txt /a.txt\nRUN wc -c /a.txt > /a.size\n`,
    b: `FROM busybox\n${common}\nRUN echo b > /b\nCMD ["cat", "/b"]\n`,
    c: `FROM busybox\n${common}\nENV X=c\nCOPY . /ctx\n`,
    d: `FROM busybox\n${common}\nWORKDIR /d\nRUN echo d > d.txt\n`,
  };
  const contexts: Record<string, string> = {};
  for (const [k, df] of Object.entries(dockerfiles)) {
    contexts[k] = await makeContext({ Dockerfile: df, [`${k}.txt`]: `${k}\n` });
    temps.push(contexts[k]);
  }
  const plan = ['a', 'b', 'c', 'd', 'a', 'b', 'c', 'd', 'a', 'b'].map((k, i) => ({ k, tag: `farm/${k}${i}` }));
  const subs = await Promise.all(plan.map(({ k, tag }) => submitBuild({ redisUrl: redis.url, registry: reg.host, contextDir: contexts[k]!, tags: [tag], buildArgs: {}, push: true })));
  assert.equal(new Set(subs.map((s) => s.jobId)).size, 10);
  assert.ok(subs.every((s) => !s.deduplicated));

  const status = await farm(['farm', 'status', '--format', 'json']);
  assert.equal(status.code, 0, status.stderr);
  const st = JSON.parse(status.stdout) as { counts: Record<string, number>; workers: Array<{ name: string }> };
  assert.ok((st.counts['waiting'] ?? 0) + (st.counts['active'] ?? 0) >= 5, status.stdout);
  assert.deepEqual(st.workers.map((w) => w.name).sort(), ['w1', 'w2', 'w3']);

  const infos = await waitForBuilds(subs.map((s) => s.jobId), 120_000);
  const results = infos.map(okResult);
  for (const { tag } of plan) assert.ok(await inRegistry(tag), `${tag} is not in the registry`);
  for (const [i, r] of results.entries()) assert.deepEqual(r.pushed.map((p) => p.tag), [`${reg.host}/${plan[i]!.tag}`]);

  // Exactly one build executed the shared step; every other one found it in the cache.
  const shared = results.map((r) => ({ worker: r.worker, step: stepOf(r, common) }));
  assert.ok(shared.every((s) => s.step.length === 1), JSON.stringify(shared));
  const misses = shared.filter((s) => !s.step[0]!.hit);
  assert.equal(misses.length, 1, JSON.stringify(shared));
  const builder = misses[0]!.worker;
  for (const s of shared) if (s.step[0]!.hit) assert.ok(['local', 'remote'].includes(s.step[0]!.source), JSON.stringify(s));
  // Every other worker that built something got the step from the farm (a remote hit).
  const others = new Set(shared.map((s) => s.worker).filter((w) => w !== builder));
  assert.ok(others.size >= 1, `one worker did everything: ${JSON.stringify(shared)}`);
  for (const w of others) assert.ok(shared.some((s) => s.worker === w && s.step[0]!.hit && s.step[0]!.source === 'remote'), `${w}: ${JSON.stringify(shared)}`);
  // Each layer built was packed once, in the step: not again to publish it to the farm's cache,
  // nor to push it (a layer fetched from the farm keeps the tar it came as).
  const packs = (await Promise.all(['w1', 'w2', 'w3'].map((n) => fs.readFile(packLog(n), 'utf8').catch(() => '')))).join('').split('\n').filter(Boolean);
  const built = results.flatMap((r) => r.steps).filter((st) => !st.hit && /^(RUN|COPY|WORKDIR) /.test(st.text));
  assert.equal(packs.length, built.length, `packs:\n${packs.join('\n')}\nbuilt: ${JSON.stringify(built)}`);
  assert.equal(new Set(packs).size, packs.length, 'no layer folder was packed twice');
  // Every other step runs once too: of all the builds of one Dockerfile, whichever order they
  // ran in (concurrently or not), exactly one executed each step.
  for (const k of Object.keys(dockerfiles)) {
    const ofK = results.filter((_, i) => plan[i]!.k === k);
    for (const step of ofK[0]!.steps.filter((s) => s.text !== common)) {
      const executed = ofK.filter((r) => r.steps.some((s) => s.text === step.text && !s.hit));
      assert.equal(executed.length, 1, `${k}: ${step.text}: ${JSON.stringify(ofK.map((r) => r.steps))}`);
    }
  }
});

test('each worker serves Prometheus metrics with build and step counters', async () => {
  let success = 0;
  for (const w of workers.values()) {
    const res = await fetch(`http://127.0.0.1:${w.metricsPort}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
    const text = await res.text();
    // Only our own lines in a failure message (the default metrics are many).
    const ours = text.split('\n').filter((l) => l.includes('slipway_')).join('\n');
    for (const re of [/^# TYPE slipway_builds_total counter$/m, /^# TYPE slipway_steps_total counter$/m, /^slipway_queue_depth 0$/m, /^slipway_active_workers 3$/m]) {
      assert.ok(re.test(text), `${w.name}: no ${re} in\n${ours}`);
    }
    success += Number(/^slipway_builds_total\{result="success"\} (\d+)$/m.exec(text)?.[1] ?? 0);
    if (/result="success"/.test(text)) assert.ok(/^slipway_steps_total\{outcome="(hit|miss)",source="(local|remote)"\} \d+$/m.test(text), ours);
  }
  assert.equal(success, 11, 'the live build and the ten');
});

test('a syntax error, a failing RUN and a missing base finish at once as failed results with their line, never retried', async () => {
  const bad = await makeContext({ Dockerfile: 'FROM busybox\nFROBNICATE now\n' });
  const failing = await makeContext({ Dockerfile: 'FROM busybox\nRUN echo before && exit 3\n' });
  temps.push(bad, failing);
  const noBase = await makeContext({ Dockerfile: 'FROM nosuchbase\nRUN true\n' });
  temps.push(noBase);
  const [s, r, n] = [submitCli(bad, ['--wait']), submitCli(failing, ['--wait']), submitCli(noBase, ['--wait'])];
  // "At once, never retried" is read from the queue's own counts below (one attempt each), not timed.
  const [sCode, rCode, nCode] = await Promise.all([s.done, r.done, n.done]);
  assert.equal(sCode, 1, s.stderr());
  assert.match(s.stderr(), /^Error: Dockerfile:2: unknown instruction: FROBNICATE/m);
  assert.equal(rCode, 3, `${r.stdout()}\n${r.stderr()}`);
  assert.match(r.stderr(), /^Error: Dockerfile:2: The command '\/bin\/sh -c echo before && exit 3' returned a non-zero code: 3$/m);
  assert.match(r.stdout(), /^before$/m);
  // A base the farm's registry lacks is the user's error too (an unreachable registry would not be).
  assert.equal(nCode, 1, n.stderr());
  assert.match(n.stderr(), /^Error: Dockerfile:1: pull access denied for nosuchbase/m);

  const ids = [s.stdout(), r.stdout(), n.stdout()].map((o) => /Submitted: (b-[0-9a-f]+)/.exec(o)?.[1] ?? assert.fail(o));
  const infos = await buildInfo(redis.url, ids);
  for (const [i, info] of infos.entries()) {
    assert.ok(info, ids[i]);
    assert.equal(info.state, 'completed');
    assert.equal(info.attemptsMade, 1);
    assert.equal(info.attemptsStarted, 1);
    assert.ok(info.result && !info.result.ok);
    assert.equal(info.result.error.line, i === 2 ? 1 : 2);
  }
  const [syntax, run] = infos.map((i) => i!.result as Extract<BuildJobResult, { ok: false }>);
  assert.equal(syntax!.error.code, 'ERR_DOCKERFILE_SYNTAX');
  assert.equal(run!.error.code, 'ERR_STEP_FAILED');
  assert.equal(run!.error.exitCode, 3);
  const step = stepOf(run!, 'RUN echo before');
  assert.equal(step.length, 1);
  assert.equal(step[0]!.hit, false);
  assert.ok(step[0]!.durationMs < 60_000, 'a failed step has a duration, not a timestamp');
});

test('kill -9 of the worker in the middle of a long RUN: another worker builds it, once', async () => {
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nRUN echo long && sleep 8\nRUN echo after > /after\n' });
  temps.push(ctx);
  const sub = await submitBuild({ redisUrl: redis.url, registry: reg.host, contextDir: ctx, tags: ['farm/survivor'], buildArgs: {}, push: true });
  let out = '';
  const followed = followBuild(redis.url, sub.jobId, (t) => (out += t));
  const t0 = Date.now();
  while (!/Step 2\/3 : RUN echo long[\s\S]*Running in/.test(out)) {
    assert.ok(Date.now() - t0 < 30_000, `the long step did not start: ${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  await new Promise((r) => setTimeout(r, 500));
  const [running] = await buildInfo(redis.url, [sub.jobId]);
  const victim = workers.get(running?.worker ?? '');
  assert.ok(victim, `taken by ${running?.worker}`);
  victim.child.kill('SIGKILL');
  assert.equal((await victim.exited).signal, 'SIGKILL');
  workers.delete(victim.name);
  retired.push(victim);

  const result = await followed;
  assert.ok(result.ok, JSON.stringify(result));
  assert.notEqual(result.worker, victim.name);
  // Retaken once, finished once; the dead worker published nothing, so the step ran again (a miss).
  const [info] = await buildInfo(redis.url, [sub.jobId]);
  assert.equal(info?.state, 'completed');
  assert.equal(info.attemptsMade, 1);
  assert.equal(info.stalledCounter, 1);
  assert.equal(info.attemptsStarted, 2);
  const long = stepOf(result, 'RUN echo long');
  assert.equal(long.length, 1);
  assert.equal(long[0]!.hit, false);
  assert.match(out, new RegExp(`Taken again by ${result.worker} \\(attempt 2\\)`));
  assert.equal(out.match(/Successfully built/g)?.length, 1, out);
  assert.ok(await inRegistry('farm/survivor'));
  // The dead worker comes back (same name and root) for the tests that follow.
  await startWorker(victim.name, victim.root);
});

test('Redis stopped and restarted with builds queued and running: every build completes', async () => {
  const subs = [];
  for (let i = 0; i < 5; i++) {
    const ctx = await makeContext({ Dockerfile: `FROM busybox\nRUN echo outage-${i} && sleep 2\n` });
    temps.push(ctx);
    subs.push(await submitBuild({ redisUrl: redis.url, registry: reg.host, contextDir: ctx, tags: [`farm/outage${i}`], buildArgs: {}, push: true }));
  }
  const t0 = Date.now();
  for (;;) {
    const infos = await buildInfo(redis.url, subs.map((s) => s.jobId));
    if (infos.some((i) => i?.state === 'active')) break;
    assert.ok(Date.now() - t0 < 20_000, 'nothing started');
    await new Promise((r) => setTimeout(r, 100));
  }
  await new Promise((r) => setTimeout(r, 500));
  await redis.kill();
  await new Promise((r) => setTimeout(r, 3000));
  await redis.restart();
  const infos = await waitForBuilds(subs.map((s) => s.jobId), 90_000);
  for (const info of infos) okResult(info);
  for (let i = 0; i < 5; i++) assert.ok(await inRegistry(`farm/outage${i}`));
  for (const w of workers.values()) assert.equal(w.child.exitCode, null, `${w.name} died:\n${w.stderr()}`);
});

test('SIGTERM: a worker finishes the build it runs, then every worker exits cleanly', async () => {
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nRUN echo draining && sleep 3\n' });
  temps.push(ctx);
  const sub = await submitBuild({ redisUrl: redis.url, registry: reg.host, contextDir: ctx, tags: ['farm/drain'], buildArgs: {}, push: true });
  let out = '';
  const followed = followBuild(redis.url, sub.jobId, (t) => (out += t));
  const t0 = Date.now();
  while (!out.includes('Running in')) {
    assert.ok(Date.now() - t0 < 30_000, `the build did not start: ${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const all = [...workers.values()];
  for (const w of all) w.child.kill('SIGTERM');
  const exits = await Promise.all(all.map((w) => w.exited));
  assert.ok(Date.now() - t0 < 20_000);
  for (const [i, e] of exits.entries()) {
    assert.deepEqual(e, { code: 0, signal: null }, all[i]!.stderr());
    assert.match(all[i]!.stderr(), new RegExp(`worker ${all[i]!.name}: stopping`));
  }
  const result = await followed;
  assert.ok(result.ok, JSON.stringify(result));
  const [info] = await buildInfo(redis.url, [sub.jobId]);
  assert.equal(info?.attemptsStarted, 1, 'finished by the worker that had it, not handed back');
  assert.ok(await inRegistry('farm/drain'));
  const status = await farm(['farm', 'status']);
  assert.match(status.stdout, /^Workers: 0$/m);
});
