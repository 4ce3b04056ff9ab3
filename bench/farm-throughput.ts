#!/usr/bin/env node
/**
 * Farm throughput: builds per minute and cache hit rate with 1, 2 and 4 `slipway worker`
 * processes, with cache-affinity routing on and off. The workload is `--projects` projects
 * built in rounds (`--builds` in all): each project's Dockerfile starts with a RUN of its own
 * (a 3 MB layer: the chain a worker holds after building it), then copies a file that changes
 * every round. A round is submitted once the previous one has finished, as commits arrive.
 * With affinity, a project's next round goes to the worker holding its chain (a local hit);
 * without, to any worker, which fetches the layer from the farm's registry (a remote hit) or
 * waits. Each measurement gets a fresh Redis, a fresh registry (busybox pushed to it untimed)
 * and fresh worker roots.
 *
 *   node dist/bench/farm-throughput.js [--workers 1,2,4] [--affinity on,off] [--builds 20] [--projects 5] [--runs 1] [--threads N] [--cli PATH]
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

/** A project's base step (its own chain), then per-round work: a little CPU, a little waiting, a 1 MB layer. */
const baseStep = (project: number) => `RUN echo project ${project} > /project && head -c 3000000 /dev/urandom > /base.bin && sleep 1`;
const dockerfile = (project: number) => `FROM busybox
${baseStep(project)}
COPY input.txt /input.txt
RUN cat /input.txt /base.bin | sha256sum > /work.sha && head -c 1000000 /dev/urandom > /own.bin && sleep 1
CMD ["cat", "/work.sha"]
`;

interface Measurement {
  workers: number;
  affinity: boolean;
  builds: number;
  run: number;
  seconds: number;
  buildsPerMinute: number;
  /** Mean of each build's own duration (taken to finished), queueing left out. */
  meanBuildSeconds: number;
  /** How many builds executed a project's base step (one per project when the farm's cache works). */
  baseStepExecutions: number;
  /** Cache hits over steps, all builds. */
  hitRate: number;
  localHits: number;
  remoteHits: number;
  /** Builds the submitter offered first to a worker holding their chain. */
  routed: number;
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
async function measure(cli: string, seed: string, m: { n: number; affinity: boolean; builds: number; projects: number; run: number; threads: number | undefined }): Promise<Measurement> {
  const { n, builds, run, threads } = m;
  let redis: TestRedis | undefined;
  let reg: TestRegistry | undefined;
  const children: ChildProcess[] = [];
  try {
    [redis, reg] = await Promise.all([startRedis(), startRegistry()]);
    for (const args of [['tag', 'busybox', `${reg.host}/busybox`], ['push', `${reg.host}/busybox`]]) {
      const r = await slipway(seed, args);
      if (r.code !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
    }
    const ctxRoot = await tmpDir(`ctx${n}`);
    for (let w = 0; w < n; w++) {
      children.push(await startWorker(cli, { name: `w${w + 1}`, root: await tmpDir(`root${n}-w${w + 1}`), redis: redis.url, registry: reg.host, ...(threads ? { threads } : {}) }));
    }
    log(`${n} worker(s) up, affinity ${m.affinity ? 'on' : 'off'}; submitting ${builds} builds of ${m.projects} projects in rounds`);
    const ids: string[] = [];
    let routed = 0;
    for (let i = 0; i < builds;) {
      const round: string[] = [];
      for (let p = 0; p < m.projects && i < builds; p++, i++) {
        const dir = path.join(ctxRoot, `b${i}`);
        await fs.mkdir(dir);
        await fs.writeFile(path.join(dir, 'Dockerfile'), dockerfile(p));
        await fs.writeFile(path.join(dir, 'input.txt'), `build ${i} of run ${run} with ${n} workers\n`);
        const s = await submitBuild({ redisUrl: redis.url, registry: reg.host, contextDir: dir, tags: [`bench/p${p}`], buildArgs: {}, push: true, affinity: m.affinity });
        if (s.routedTo) routed++;
        round.push(s.jobId);
      }
      await waitForBuilds(redis.url, round);
      ids.push(...round);
    }
    const infos = await waitForBuilds(redis.url, ids);
    const seconds = (Math.max(...infos.map((i) => i.finishedOn ?? 0)) - Math.min(...infos.map((i) => i.enqueuedAt))) / 1000;
    const ok = infos.filter((i) => i.result?.ok);
    const perWorker: Record<string, number> = {};
    for (const i of infos) if (i.worker) perWorker[i.worker] = (perWorker[i.worker] ?? 0) + 1;
    const steps = infos.flatMap((i) => i.result?.steps ?? []);
    const base = steps.filter((s) => s.text.startsWith('RUN echo project'));
    return {
      workers: n, affinity: m.affinity, builds, run, seconds: round(seconds), buildsPerMinute: round((ok.length / seconds) * 60),
      meanBuildSeconds: round(infos.reduce((a, i) => a + ((i.finishedOn ?? 0) - (i.processedOn ?? 0)), 0) / infos.length / 1000),
      baseStepExecutions: base.filter((s) => !s.hit).length, hitRate: round(steps.filter((s) => s.hit).length / Math.max(1, steps.length)),
      localHits: steps.filter((s) => s.hit && s.source === 'local').length, remoteHits: steps.filter((s) => s.hit && s.source === 'remote').length,
      routed, failed: infos.length - ok.length, perWorker,
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
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
  const keys = [...new Set(ms.map((m) => `${m.workers}/${m.affinity}`))];
  const rows = keys.map((k) => {
    const of = ms.filter((m) => `${m.workers}/${m.affinity}` === k);
    const f = of[0]!;
    const med = (pick: (m: Measurement) => number) => median(of.map(pick));
    return `| ${f.workers} | ${f.affinity ? 'on' : 'off'} | ${med((m) => m.seconds)} | ${med((m) => m.buildsPerMinute)} | ${Math.round(med((m) => m.hitRate) * 100)} % | ${med((m) => m.localHits)} / ${med((m) => m.remoteHits)} | ${med((m) => m.routed)} | ${med((m) => m.meanBuildSeconds)} | ${of.map((m) => m.baseStepExecutions).join(',')} |`;
  });
  return ['| workers | affinity | seconds | builds/min | cache hit rate | hits local / remote | routed | mean build s | base steps executed |', '|---|---|---|---|---|---|---|---|---|', ...rows].join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      workers: { type: 'string', default: '1,2,4' }, affinity: { type: 'string', default: 'on,off' }, builds: { type: 'string', default: '20' },
      projects: { type: 'string', default: '5' }, runs: { type: 'string', default: '1' }, threads: { type: 'string' }, cli: { type: 'string' },
    },
  });
  const cli = values.cli ?? fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
  const counts = values.workers.split(',').map(Number);
  const builds = Number(values.builds);
  const projects = Number(values.projects);
  const modes = values.affinity.split(',').map((a) => {
    if (a !== 'on' && a !== 'off') throw new Error(`--affinity takes on, off or on,off, not ${a}`);
    return a === 'on';
  });
  const runs = Number(values.runs);
  const threads = values.threads ? Number(values.threads) : undefined;
  log(`${os.cpus().length} cores; ${builds} builds of ${projects} projects per measurement; affinity ${values.affinity}; workers ${counts.join(', ')}; ${runs} run(s)`);
  const seed = await storeWithBusybox();
  temps.push(seed);
  const results: Measurement[] = [];
  for (let run = 1; run <= runs; run++) {
    for (const n of counts) {
      for (const affinity of modes) {
        const m = await measure(cli, seed, { n, affinity, builds, projects, run, threads });
        console.log(JSON.stringify(m));
        results.push(m);
      }
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
