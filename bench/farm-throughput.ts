#!/usr/bin/env node
/**
 * Farm throughput: builds per minute with 1, 2 and 4 `slipway worker` processes on one queue of
 * 20 builds. Every build has its own context (so the cache cannot make it trivial) and the same
 * Dockerfile, whose first RUN is the same for all (the shared base step: built once farm-wide,
 * fetched by the others). Each measurement gets a fresh Redis, a fresh registry (busybox pushed
 * to it untimed) and fresh worker roots.
 *
 *   node dist/bench/farm-throughput.js [--workers 1,2,4] [--builds 20] [--runs 1] [--threads N] [--cli PATH]
 *
 * The clock runs from the first job's enqueue to the last one's finish (bullmq's own timestamps),
 * with the workers already up and idle. Prints one JSON line per measurement, then a Markdown
 * table with each worker count's throughput relative to one worker. It never asserts.
 * Progress goes to stderr, prefixed `#`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { startRedis, type TestRedis } from '../test/support/redis.js';
import { startRegistry, type TestRegistry } from '../test/support/registry.js';
import { storeWithBusybox, slipway } from '../test/support/cli.js';
import { buildInfo, submitBuild, type BuildInfo } from '../src/farm/submit.js';

const SHARED_STEP = 'RUN head -c 3000000 /dev/urandom > /base.bin && sleep 1';
/** The shared base step, then per-build work: a little CPU, a little waiting, a 1 MB layer of its own. */
const DOCKERFILE = `FROM busybox
${SHARED_STEP}
COPY input.txt /input.txt
RUN cat /input.txt /base.bin | sha256sum > /work.sha && head -c 1000000 /dev/urandom > /own.bin && sleep 1
CMD ["cat", "/work.sha"]
`;

interface Measurement {
  workers: number;
  builds: number;
  run: number;
  seconds: number;
  buildsPerMinute: number;
  /** Mean of each build's own duration (taken to finished), queueing left out. */
  meanBuildSeconds: number;
  /** How many builds executed the shared step (1 when the farm's cache works). */
  sharedStepExecutions: number;
  remoteHits: number;
  failed: number;
  perWorker: Record<string, number>;
}

const live = new Set<ChildProcess>();
const temps: string[] = [];
let interrupted = false;

function log(line: string): void {
  process.stderr.write(`# ${line}\n`);
}

async function tmpDir(label: string): Promise<string> {
  const d = await fs.mkdtemp(path.join(os.tmpdir(), `slipway-farm-bench-${label}-`));
  temps.push(d);
  return d;
}

/** Spawns a worker and resolves once it waits for builds. */
function startWorker(cli: string, opts: { name: string; root: string; redis: string; registry: string; threads?: number }): Promise<ChildProcess> {
  const child = spawn(process.execPath, [cli, '--root', opts.root, 'worker', '--redis', opts.redis, '--registry', opts.registry, '--name', opts.name,
    ...(opts.threads ? ['--threads', String(opts.threads)] : [])], { stdio: ['ignore', 'ignore', 'pipe'] });
  live.add(child);
  child.on('exit', () => live.delete(child));
  let err = '';
  return new Promise((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes('waiting for builds')) resolve(child);
    });
    child.on('exit', (code) => reject(new Error(`worker ${opts.name} exited ${code}: ${err}`)));
  });
}

async function stopWorkers(children: ChildProcess[]): Promise<void> {
  await Promise.all(children.map((c) => new Promise<void>((resolve) => {
    if (c.exitCode !== null || c.signalCode !== null) return resolve();
    const timer = setTimeout(() => c.kill('SIGKILL'), 15_000);
    c.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    c.kill('SIGTERM');
  })));
}

async function waitForBuilds(redisUrl: string, ids: string[]): Promise<BuildInfo[]> {
  for (;;) {
    if (interrupted) throw new Error('interrupted');
    const infos = await buildInfo(redisUrl, ids);
    if (infos.every((i) => i && (i.state === 'completed' || i.state === 'failed'))) return infos as BuildInfo[];
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** One measurement: fresh Redis, registry and roots; `n` workers; `builds` distinct builds. */
async function measure(cli: string, seed: string, n: number, builds: number, run: number, threads: number | undefined): Promise<Measurement> {
  let redis: TestRedis | undefined;
  let reg: TestRegistry | undefined;
  const children: ChildProcess[] = [];
  try {
    [redis, reg] = await Promise.all([startRedis(), startRegistry()]);
    for (const args of [['tag', 'busybox', `${reg.host}/busybox`], ['push', `${reg.host}/busybox`]]) {
      const r = await slipway(seed, args);
      if (r.code !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
    }
    const contexts: string[] = [];
    const ctxRoot = await tmpDir(`ctx${n}`);
    for (let i = 0; i < builds; i++) {
      const dir = path.join(ctxRoot, `b${i}`);
      await fs.mkdir(dir);
      await fs.writeFile(path.join(dir, 'Dockerfile'), DOCKERFILE);
      await fs.writeFile(path.join(dir, 'input.txt'), `build ${i} of run ${run} with ${n} workers\n`);
      contexts.push(dir);
    }
    for (let w = 0; w < n; w++) {
      children.push(await startWorker(cli, { name: `w${w + 1}`, root: await tmpDir(`root${n}-w${w + 1}`), redis: redis.url, registry: reg.host, ...(threads ? { threads } : {}) }));
    }
    log(`${n} worker(s) up; submitting ${builds} builds`);
    const ids: string[] = [];
    for (const [i, dir] of contexts.entries()) {
      const s = await submitBuild({ redisUrl: redis.url, registry: reg.host, contextDir: dir, tags: [`bench/b${i}`], buildArgs: {}, push: true });
      ids.push(s.jobId);
    }
    const infos = await waitForBuilds(redis.url, ids);
    const seconds = (Math.max(...infos.map((i) => i.finishedOn ?? 0)) - Math.min(...infos.map((i) => i.enqueuedAt))) / 1000;
    const ok = infos.filter((i) => i.result?.ok);
    const perWorker: Record<string, number> = {};
    for (const i of infos) if (i.worker) perWorker[i.worker] = (perWorker[i.worker] ?? 0) + 1;
    const shared = infos.flatMap((i) => i.result?.steps.filter((s) => s.text === SHARED_STEP) ?? []);
    return {
      workers: n, builds, run, seconds: round(seconds), buildsPerMinute: round((ok.length / seconds) * 60),
      meanBuildSeconds: round(infos.reduce((a, i) => a + ((i.finishedOn ?? 0) - (i.processedOn ?? 0)), 0) / infos.length / 1000),
      sharedStepExecutions: shared.filter((s) => !s.hit).length, remoteHits: infos.reduce((a, i) => a + (i.result?.steps.filter((s) => s.hit && s.source === 'remote').length ?? 0), 0),
      failed: infos.length - ok.length, perWorker,
    };
  } finally {
    await stopWorkers(children);
    await redis?.stop();
    await reg?.stop();
  }
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

function table(ms: Measurement[]): string {
  const counts = [...new Set(ms.map((m) => m.workers))].sort((a, b) => a - b);
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
  const bpm = new Map(counts.map((c) => [c, median(ms.filter((m) => m.workers === c).map((m) => m.buildsPerMinute))]));
  const base = bpm.get(counts[0]!) ?? NaN;
  const rows = counts.map((c) => {
    const of = ms.filter((m) => m.workers === c);
    const b = bpm.get(c)!;
    return `| ${c} | ${median(of.map((m) => m.seconds))} | ${b} | ${round(b / base)}× | ${round(b / base / (c / counts[0]!))} | ${median(of.map((m) => m.meanBuildSeconds))} | ${of.map((m) => m.sharedStepExecutions).join(',')} |`;
  });
  return ['| workers | seconds | builds/min | vs 1 worker | efficiency | mean build s | shared step executed |', '|---|---|---|---|---|---|---|', ...rows].join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { workers: { type: 'string', default: '1,2,4' }, builds: { type: 'string', default: '20' }, runs: { type: 'string', default: '1' }, threads: { type: 'string' }, cli: { type: 'string' } },
  });
  const cli = values.cli ?? fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
  const counts = values.workers.split(',').map(Number);
  const builds = Number(values.builds);
  const runs = Number(values.runs);
  const threads = values.threads ? Number(values.threads) : undefined;
  log(`${os.cpus().length} cores; ${builds} builds per measurement; workers ${counts.join(', ')}; ${runs} run(s)`);
  const seed = await storeWithBusybox();
  temps.push(seed);
  const results: Measurement[] = [];
  for (let run = 1; run <= runs; run++) {
    for (const n of counts) {
      const m = await measure(cli, seed, n, builds, run, threads);
      console.log(JSON.stringify(m));
      results.push(m);
    }
  }
  console.log('');
  console.log(table(results));
}

async function cleanup(): Promise<void> {
  for (const c of live) c.kill('SIGKILL');
  for (const d of temps) await fs.rm(d, { recursive: true, force: true }).catch(() => undefined);
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    interrupted = true;
    void cleanup().then(() => process.exit(130));
  });
}

main().then(cleanup, async (e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  await cleanup();
  process.exitCode = 1;
});
