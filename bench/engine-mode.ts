/**
 * The resident engine against an in-process build, side by side: for each corpus entry, one
 * store with busybox imported and the entry built once (untimed), then rounds that alternate
 * `slipway build` in-process (SLIPWAY_ENGINE=off) and through `slipway serve` on the store's
 * socket. Modes: `warm` (nothing changed) and `touched` (the entry's named file gets new bytes
 * before each build, so both modes rebuild from the same step). Prints one JSON line per
 * measurement (median seconds of N runs) and a table with the ratio engine / in-process.
 *
 *   node dist/bench/engine-mode.js [--runs 7] [--only REGEX] [--corpus DIR]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync, execFileSync, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { median } from './stats.js';

const { values } = parseArgs({ options: { runs: { type: 'string' }, only: { type: 'string' }, corpus: { type: 'string' } } });
const RUNS = Number(values.runs ?? 7);
const CORPUS = values.corpus ?? '/work/shared/bench/corpus';
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const ROOTFS_SCRIPT = fileURLToPath(new URL('../../scripts/make-busybox-rootfs.sh', import.meta.url));
/**
 * The file each entry's touched mode changes (as build-bench does; the corpus README names
 * them). Until 2026-12-05 many-steps and multi-stage had each other's file here: many-steps
 * "touched" appended to an input.txt its Dockerfile never reads, so that row was a warm build.
 */
const TOUCHED: Record<string, string> = { 'many-steps': 'base.txt', 'big-context': 'data/d07/f0742.bin', 'layer-heavy': 'params.txt', 'multi-stage': 'input.txt', 'cache-probe': 'probe.txt' };


function cli(root: string, args: string[], env: NodeJS.ProcessEnv = {}): number {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [CLI, '--root', root, ...args], { env: { ...process.env, ...env }, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`slipway ${args.join(' ')}: ${r.stderr}`);
  return (performance.now() - t0) / 1000;
}

async function startEngine(root: string): Promise<ChildProcess> {
  const c = spawn(process.execPath, [CLI, '--root', root, 'serve'], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    c.stdout!.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('listening on')) resolve(); });
    c.once('exit', (code) => reject(new Error(`serve exited (${code})`)));
  });
  return c;
}

async function measureEntry(entry: string, base: string, work: string): Promise<void> {
  const dir = path.join(work, entry);
  execFileSync('cp', ['-a', path.join(CORPUS, entry), dir]);
  if (fs.existsSync(path.join(dir, 'gen-context.sh'))) execFileSync('sh', ['gen-context.sh'], { cwd: dir });
  const root = path.join(work, `${entry}-root`);
  cli(root, ['import', '--change', 'CMD ["sh"]', base, 'busybox:latest']);
  cli(root, ['build', '-t', `bench/${entry}`, dir], { SLIPWAY_ENGINE: 'off' });
  const engine = await startEngine(root);
  try {
    for (const mode of TOUCHED[entry] ? ['warm', 'touched'] : ['warm']) {
      const samples: Record<'in-process' | 'engine', number[]> = { 'in-process': [], engine: [] };
      for (let i = 0; i < RUNS; i++) {
        // The starting mode alternates, so drift and page-cache effects hit both alike.
        const order = i % 2 === 0 ? (['in-process', 'engine'] as const) : (['engine', 'in-process'] as const);
        for (const how of order) {
          if (mode === 'touched') fs.appendFileSync(path.join(dir, TOUCHED[entry]!), `${how}-${i}-${Math.random()}\n`);
          samples[how].push(cli(root, ['build', '-t', `bench/${entry}`, dir], how === 'in-process' ? { SLIPWAY_ENGINE: 'off' } : {}));
        }
      }
      const inProcess = median(samples['in-process']);
      const viaEngine = median(samples.engine);
      console.log(JSON.stringify({ entry, mode, runs: RUNS, inProcess, engine: viaEngine, ratio: viaEngine / inProcess, samples }));
      rows.push(`| ${entry} | ${mode} | ${inProcess.toFixed(2)} | ${viaEngine.toFixed(2)} | ${(viaEngine / inProcess).toFixed(2)} |`);
    }
  } finally {
    engine.kill('SIGTERM');
    await new Promise((r) => engine.once('exit', r));
  }
}

const rows: string[] = [];
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'slipway-engine-bench-'));
try {
  const base = path.join(work, 'busybox.tar');
  execFileSync('bash', [ROOTFS_SCRIPT, base]);
  const entries = fs.readdirSync(CORPUS).filter((e) => fs.existsSync(path.join(CORPUS, e, 'Dockerfile')) && (!values.only || new RegExp(values.only).test(e)));
  for (const e of entries) await measureEntry(e, base, work);
  console.log(`\n| entry | mode | in-process s | engine s | engine / in-process |\n|---|---|---:|---:|---:|\n${rows.join('\n')}`);
  console.log(`\nload average at the end: ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
