#!/usr/bin/env node
/**
 * Farm cache mounts: what sharing a `RUN --mount=type=cache` across workers saves. The
 * Dockerfile's one RUN fills /cache with `--files` files of 4 KB on its first run (the work a
 * package cache saves: one process per file, as a download per package) and only reads them
 * when they are there. A build argument changes every build, so the RUN always runs (a cache
 * mount's content is never part of the step's key). Per mode, with fresh Redis, registry and
 * worker roots:
 *
 *   cold         first build on worker A: an empty mount, filled (and, shared, published)
 *   local-warm   second build on A: the mount is on A's disk
 *   remote       third build on worker B (A stopped first): shared, B restores the mount from
 *                the farm's registry before the step; unshared, B starts it empty and fills it
 *
 * Modes: `shared` (workers as default) and `unshared` (workers with --no-cache-mount-sharing).
 *
 *   node dist/bench/farm-cache-mount.js [--files 2000] [--runs 1] [--modes shared,unshared] [--cli PATH]
 *
 * For each build: the worker's build time (job taken to finished, from bullmq) and the RUN step's
 * time (which includes the restore before it and the publish after it). Prints one JSON line per
 * build, then a Markdown table of medians. Never asserts. Progress goes to stderr, prefixed `#`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { startRedis } from '../test/support/redis.js';
import { startRegistry } from '../test/support/registry.js';
import { storeWithBusybox, slipway } from '../test/support/cli.js';
import { followBuild, submitBuild } from '../src/farm/submit.js';

const dockerfile = (files: number) => `FROM busybox
ARG BUILD
RUN --mount=type=cache,target=/cache sh -c 'echo build $BUILD; if [ -f /cache/done ]; then echo read $(cat /cache/f* | wc -c) bytes; else i=0; while [ $i -lt ${files} ]; do head -c 4096 /dev/urandom > /cache/f$i; i=$((i+1)); done; touch /cache/done; echo filled; fi'
`;

type Phase = 'cold' | 'local-warm' | 'remote';
interface Measurement { mode: 'shared' | 'unshared'; phase: Phase; run: number; worker: string; buildSeconds: number; runStepSeconds: number; filled: boolean; sharing: string }

const live = new Set<ChildProcess>();
const temps: string[] = [];

function log(line: string): void {
  process.stderr.write(`# ${line}\n`);
}

async function tmpDir(label: string): Promise<string> {
  const d = await fs.mkdtemp(path.join(os.tmpdir(), `slipway-cm-bench-${label}-`));
  temps.push(d);
  return d;
}

function startWorker(cli: string, o: { name: string; redis: string; registry: string; extra: string[] }): Promise<ChildProcess> {
  return tmpDir(`root-${o.name}`).then((root) => new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, '--root', root, 'worker', '--redis', o.redis, '--registry', o.registry, '--name', o.name, ...o.extra], { stdio: ['ignore', 'ignore', 'pipe'] });
    live.add(child);
    let err = '';
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes('waiting for builds')) resolve(child);
    });
    child.on('exit', (code) => {
      live.delete(child);
      reject(new Error(`worker ${o.name} exited ${code}: ${err}`));
    });
  }));
}

async function stopWorker(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise<void>((r) => c.once('exit', () => r()));
  c.kill('SIGTERM');
  await exited;
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

/** One build: submitted, followed to its end; the worker's and the RUN step's times. */
async function buildOnce(ctx: string, redis: string, registry: string, build: string): Promise<{ worker: string; buildSeconds: number; runStepSeconds: number; out: string }> {
  const sub = await submitBuild({ redisUrl: redis, registry, contextDir: ctx, tags: [], buildArgs: { BUILD: build }, push: false, affinity: false });
  let out = '';
  const result = await followBuild(redis, sub.jobId, (t) => {
    out += t;
  });
  if (!result.ok) throw new Error(`build ${build} failed: ${result.error.message}\n${out}`);
  const run = result.steps.find((s) => s.text.startsWith('RUN'));
  return { worker: result.worker, buildSeconds: round(result.durationMs / 1000), runStepSeconds: round((run?.durationMs ?? NaN) / 1000), out };
}

async function measure(cli: string, seed: string, mode: 'shared' | 'unshared', run: number, files: number): Promise<Measurement[]> {
  const [redis, reg] = await Promise.all([startRedis(), startRegistry()]);
  const workers: ChildProcess[] = [];
  try {
    for (const args of [['tag', 'busybox', `${reg.host}/busybox`], ['push', `${reg.host}/busybox`]]) {
      const r = await slipway(seed, args);
      if (r.code !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
    }
    const ctx = await tmpDir('ctx');
    await fs.writeFile(path.join(ctx, 'Dockerfile'), dockerfile(files));
    const extra = mode === 'shared' ? [] : ['--no-cache-mount-sharing'];
    const out: Measurement[] = [];
    const record = (phase: Phase, b: Awaited<ReturnType<typeof buildOnce>>) => {
      const sharing = /cache mount [^\n]*: (published|restored)[^\n]*/g;
      const m: Measurement = { mode, phase, run, worker: b.worker, buildSeconds: b.buildSeconds, runStepSeconds: b.runStepSeconds, filled: /^filled$/m.test(b.out), sharing: [...b.out.matchAll(sharing)].map((x) => x[0]).join(' | ') };
      process.stdout.write(`${JSON.stringify(m)}\n`);
      out.push(m);
    };
    const a = await startWorker(cli, { name: 'a', redis: redis.url, registry: reg.host, extra });
    workers.push(a);
    log(`${mode} run ${run}: cold on a`);
    record('cold', await buildOnce(ctx, redis.url, reg.host, `${run}-1`));
    log(`${mode} run ${run}: local warm on a`);
    record('local-warm', await buildOnce(ctx, redis.url, reg.host, `${run}-2`));
    await stopWorker(a);
    workers.push(await startWorker(cli, { name: 'b', redis: redis.url, registry: reg.host, extra }));
    log(`${mode} run ${run}: on b`);
    record('remote', await buildOnce(ctx, redis.url, reg.host, `${run}-3`));
    return out;
  } finally {
    for (const w of workers) await stopWorker(w);
    await redis.stop();
    await reg.stop();
  }
}

function table(ms: Measurement[]): string {
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
  const rows: string[] = [];
  for (const mode of ['shared', 'unshared'] as const) {
    for (const phase of ['cold', 'local-warm', 'remote'] as const) {
      const of = ms.filter((m) => m.mode === mode && m.phase === phase);
      if (of.length === 0) continue;
      rows.push(`| ${mode} | ${phase} | ${of[0]!.worker} | ${median(of.map((m) => m.runStepSeconds))} | ${median(of.map((m) => m.buildSeconds))} | ${of.map((m) => (m.filled ? 'filled' : 'read')).join(',')} |`);
    }
  }
  return ['| sharing | build | worker | RUN step s | build s | mount |', '|---|---|---|---|---|---|', ...rows].join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { files: { type: 'string', default: '2000' }, runs: { type: 'string', default: '1' }, modes: { type: 'string', default: 'shared,unshared' }, cli: { type: 'string' } } });
  const cli = values.cli ?? fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
  const modes = values.modes.split(',').map((m) => {
    if (m !== 'shared' && m !== 'unshared') throw new Error(`--modes takes shared, unshared or both, not ${m}`);
    return m;
  });
  log(`${os.cpus().length} cores, load ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}; ${values.files} files; modes ${modes.join(', ')}; ${values.runs} run(s)`);
  const seed = await storeWithBusybox();
  temps.push(seed);
  const all: Measurement[] = [];
  try {
    for (let run = 1; run <= Number(values.runs); run++) for (const mode of modes) all.push(...await measure(cli, seed, mode, run, Number(values.files)));
  } finally {
    for (const c of live) c.kill('SIGKILL');
    for (const d of temps) await fs.rm(d, { recursive: true, force: true });
  }
  log(`load at the end ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  process.stdout.write(`\n${table(all)}\n`);
}

process.on('SIGINT', () => {
  for (const c of live) c.kill('SIGKILL');
  process.exit(130);
});
await main();
