#!/usr/bin/env node
/**
 * The fixed cost of a standalone `slipway build`: warm builds (every step cached) of corpus
 * entries, by several Slipway CLIs interleaved, each with its own store. A warm build runs no
 * step, so its time is almost all process start-up: Node's own, loading modules, reading the
 * store. Besides wall seconds it prints the CPU seconds (user + system) of the build process
 * and its children, which other work on a busy machine disturbs much less than wall time.
 *
 *   node dist/bench/startup-cost.js --cli now=dist/src/cli/main.js --cli before=/work/wt/before/dist/src/cli/main.js
 *                                   [--runs 15] [--only REGEX] [--node PATH] [--corpus DIR]
 *
 * Prints one JSON line per (entry, cli): {entry, cli, runs, wall, cpu, wallSamples, cpuSamples}
 * (medians), then a table with each CLI's ratio to the first one. Never asserts.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { median } from './stats.js';

const { values } = parseArgs({ options: { cli: { type: 'string', multiple: true }, runs: { type: 'string' }, only: { type: 'string' }, node: { type: 'string' }, corpus: { type: 'string' } } });
const RUNS = Number(values.runs ?? 15);
if (!Number.isInteger(RUNS) || RUNS < 1) throw new Error('--runs takes a positive integer');
const NODE = values.node ?? process.execPath;
const CORPUS = values.corpus ?? '/work/shared/bench/corpus';
const ROOTFS_SCRIPT = fileURLToPath(new URL('../../scripts/make-busybox-rootfs.sh', import.meta.url));
const CLIS = (values.cli ?? [`now=${fileURLToPath(new URL('../src/cli/main.js', import.meta.url))}`]).map((s) => {
  const eq = s.indexOf('=');
  if (eq <= 0) throw new Error(`--cli takes LABEL=PATH, not ${s}`);
  const file = path.resolve(s.slice(eq + 1));
  if (!fs.existsSync(file)) throw new Error(`no CLI at ${file}`);
  return { label: s.slice(0, eq), file };
});


/** bash's `times` after the command: its second line is the children's user and system time. */
function seconds(t: string): number {
  const m = /^(\d+)m([\d.]+)s$/.exec(t);
  if (!m) throw new Error(`unexpected times output ${t}`);
  return Number(m[1]) * 60 + Number(m[2]);
}

/** One standalone build: wall seconds, and CPU seconds of the process and everything it waited for. */
function timedBuild(cli: string, root: string, dir: string): { wall: number; cpu: number } {
  const t0 = performance.now();
  const err = path.join(work, 'build.err');
  const r = spawnSync('bash', ['-c', `"$@" >/dev/null 2>'${err}' || exit 1; times`, 'bash', NODE, cli, '--root', root, 'build', '-t', 'bench/startup', dir], { encoding: 'utf8', env: { ...process.env, SLIPWAY_ENGINE: 'off' } });
  const wall = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`build failed: ${fs.readFileSync(err, 'utf8')}`);
  const [, children] = r.stdout.trim().split('\n');
  const [user, sys] = children!.trim().split(/\s+/).map(seconds) as [number, number];
  return { wall, cpu: user + sys };
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'slipway-startup-cost-'));
const rows: string[] = [];
try {
  const base = path.join(work, 'busybox.tar');
  execFileSync('bash', [ROOTFS_SCRIPT, base], { stdio: ['ignore', 'ignore', 'inherit'] });
  const entries = fs.readdirSync(CORPUS).filter((e) => fs.existsSync(path.join(CORPUS, e, 'Dockerfile')) && new RegExp(values.only ?? '^(seed|many-steps)$').test(e));
  for (const entry of entries) {
    const dir = path.join(work, entry);
    execFileSync('cp', ['-a', path.join(CORPUS, entry), dir]);
    if (fs.existsSync(path.join(dir, 'gen-context.sh'))) execFileSync('sh', ['gen-context.sh'], { cwd: dir });
    const arms = CLIS.map((c) => ({ ...c, root: path.join(work, `${entry}-${c.label}`), wall: [] as number[], cpu: [] as number[] }));
    for (const a of arms) {
      execFileSync(NODE, [a.file, '--root', a.root, 'import', '--change', 'CMD ["sh"]', base, 'busybox:latest'], { stdio: 'ignore' });
      timedBuild(a.file, a.root, dir); // untimed priming build: every later one is warm
    }
    for (let i = 0; i < RUNS; i++) {
      // The starting CLI rotates, so load drift on a shared machine hits every CLI alike.
      for (let j = 0; j < arms.length; j++) {
        const a = arms[(i + j) % arms.length]!;
        const t = timedBuild(a.file, a.root, dir);
        a.wall.push(Math.round(t.wall * 1000) / 1000);
        a.cpu.push(Math.round(t.cpu * 1000) / 1000);
      }
    }
    const first = arms[0]!;
    for (const a of arms) {
      const wall = median(a.wall);
      const cpu = median(a.cpu);
      console.log(JSON.stringify({ entry, cli: a.label, runs: RUNS, wall, cpu, wallSamples: a.wall, cpuSamples: a.cpu }));
      rows.push(`| ${entry} | ${a.label} | ${wall.toFixed(3)} | ${cpu.toFixed(3)} | ${(wall / median(first.wall)).toFixed(2)} | ${(cpu / median(first.cpu)).toFixed(2)} |`);
    }
  }
  console.log(`\n| entry | cli | wall s | cpu s | wall / ${CLIS[0]!.label} | cpu / ${CLIS[0]!.label} |\n|---|---|---:|---:|---:|---:|\n${rows.join('\n')}`);
  console.log(`\nnode ${execFileSync(NODE, ['--version'], { encoding: 'utf8' }).trim()}; load average at the end: ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
