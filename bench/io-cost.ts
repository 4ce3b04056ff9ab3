/**
 * Two I/O figures of issue 13, measured from outside through the CLI:
 *
 * 1. Context hashing throughput, stat cache cold: `build --plan` of `COPY . /ctx` over a context
 *    of N MB (many files) in a fresh root (no stat cache), minus the same over a one-file context;
 *    the difference is the hashing of the N MB. Printed in GB/s. (The files were just written, so
 *    the page cache is warm: this is hashing, not disk reading.)
 * 2. The snapshot cost of a one-file change on top of a rootfs of 50, 200 and 800 MB: the wall
 *    time of `RUN echo … > /one-N` over a base image holding that much (from its `Step` line to the
 *    next one), median of several such steps in one build after a warm-up RUN, each a cache miss. With overlay snapshots it should be
 *    flat in the rootfs size; `--storage-driver vfs` is printed beside it for contrast when asked.
 *
 *   node dist/bench/io-cost.js [--context-mb 200] [--sizes 50,200,800] [--runs 5] [--vfs] [--cli PATH]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawn, execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { median } from './stats.js';

const { values } = parseArgs({
  options: { 'context-mb': { type: 'string' }, sizes: { type: 'string' }, runs: { type: 'string' }, vfs: { type: 'boolean' }, cli: { type: 'string' }, base: { type: 'string' } },
});
const CONTEXT_MB = Number(values['context-mb'] ?? 200);
const SIZES = (values.sizes ?? '50,200,800').split(',').map(Number);
const RUNS = Number(values.runs ?? 5);
const CLI = path.resolve(values.cli ?? fileURLToPath(new URL('../src/cli/main.js', import.meta.url)));
const ROOTFS_SCRIPT = fileURLToPath(new URL('../../scripts/make-busybox-rootfs.sh', import.meta.url));


/** Runs the CLI; resolves with the wall time and the arrival time of each output line. */
function run(args: string[]): Promise<{ ms: number; lines: Array<{ t: number; text: string }> }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const lines: Array<{ t: number; text: string }> = [];
    const c = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let buf = '';
    let err = '';
    c.stdout.on('data', (b: Buffer) => {
      buf += b.toString();
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        lines.push({ t: performance.now(), text: buf.slice(0, nl) });
        buf = buf.slice(nl + 1);
      }
    });
    c.stderr.on('data', (b: Buffer) => { err += b.toString(); });
    c.on('error', reject);
    c.on('exit', (code) => (code === 0 ? resolve({ ms: performance.now() - t0, lines }) : reject(new Error(`slipway ${args.join(' ')} failed (${code}): ${err}`))));
  });
}

/** A fresh root with busybox imported. */
function freshRoot(work: string, base: string, name: string): string {
  const root = path.join(work, name);
  execFileSync(process.execPath, [CLI, '--root', root, 'import', '--change', 'CMD ["sh"]', base, 'busybox:latest'], { stdio: 'ignore' });
  return root;
}

/** A context of `mb` MB in 64 KiB files (random, so nothing deduplicates), 256 per folder. */
function makeContext(dir: string, mb: number): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'Dockerfile'), 'FROM busybox\nCOPY . /ctx\n');
  const files = Math.round((mb * 1024) / 64);
  for (let i = 0; i < files; i++) {
    const sub = path.join(dir, `d${Math.floor(i / 256)}`);
    if (i % 256 === 0) fs.mkdirSync(sub);
    fs.writeFileSync(path.join(sub, `f${i}`), crypto.randomBytes(64 * 1024));
  }
}

async function contextHashing(work: string, base: string): Promise<void> {
  const big = path.join(work, 'ctx-big');
  const small = path.join(work, 'ctx-small');
  makeContext(big, CONTEXT_MB);
  makeContext(small, 0);
  const deltas: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t = async (ctx: string) => (await run(['--root', freshRoot(work, base, `plan-${i}-${path.basename(ctx)}`), 'build', '--plan', ctx])).ms;
    const s = await t(small);
    const b = await t(big);
    deltas.push(b - s);
  }
  const ms = median(deltas);
  const gbps = (CONTEXT_MB / 1024) / (ms / 1000);
  console.log(JSON.stringify({ figure: 'context hashing, stat cache cold', contextMB: CONTEXT_MB, ms: Math.round(ms), gbPerSecond: Number(gbps.toFixed(3)) }));
}

/** The one-file RUN's wall time over a base of `mb` MB: from its Step line to the next line. */
async function snapshotCost(work: string, base: string, mb: number, driver: string | undefined): Promise<number> {
  const root = freshRoot(work, base, `snap-${mb}-${driver ?? 'default'}`);
  const build = ['--root', root, 'build', ...(driver ? ['--storage-driver', driver] : [])];
  const baseCtx = path.join(work, `base-${mb}`);
  fs.mkdirSync(baseCtx, { recursive: true });
  // 16 MB files of random bytes, written inside the step (the rootfs, not the context).
  const files = Math.max(1, Math.round(mb / 16));
  fs.writeFileSync(path.join(baseCtx, 'Dockerfile'), `FROM busybox\nRUN for i in $(seq ${files}); do head -c ${16 << 20} /dev/urandom > /blob$i; done\n`);
  await run([...build, '-t', `base-${mb}`, baseCtx]);
  // One build: a first RUN that takes the build's one-time costs (worker pool, network), then
  // RUNS one-file RUNs, each timed from its Step line to the next Step (or the end).
  const ctx = path.join(work, `one-${mb}-${driver ?? 'd'}`);
  fs.mkdirSync(ctx);
  const nonce = crypto.randomBytes(6).toString('hex');
  const steps = Array.from({ length: RUNS }, (_, i) => `RUN echo ${nonce} > /one-${i}\n`).join('');
  fs.writeFileSync(path.join(ctx, 'Dockerfile'), `FROM base-${mb}\nRUN echo ${nonce} > /warm-up\n${steps}`);
  const { lines } = await run([...build, ctx]);
  const marks = lines.filter((l) => /^(Step \d+\/\d+ : |Successfully built )/.test(l.text)).map((l) => l.t);
  if (marks.length !== RUNS + 3) throw new Error(`unexpected output: ${lines.map((l) => l.text).join('\n')}`);
  const times = marks.slice(2).map((t, i) => marks[i + 3] !== undefined ? marks[i + 3]! - t : NaN).filter((x) => !Number.isNaN(x));
  return median(times);
}

async function main(): Promise<void> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'slipway-io-cost-'));
  try {
    const base = values.base ?? path.join(work, 'busybox.tar');
    if (!values.base) execFileSync('bash', [ROOTFS_SCRIPT, base], { stdio: ['ignore', 'ignore', 'inherit'] });
    await contextHashing(work, base);
    const rows: string[] = [];
    for (const driver of values.vfs ? [undefined, 'vfs'] : [undefined]) {
      for (const mb of SIZES) {
        const ms = await snapshotCost(work, base, mb, driver);
        console.log(JSON.stringify({ figure: 'one-file change: RUN step wall time', rootfsMB: mb, driver: driver ?? 'default', ms: Math.round(ms), runs: RUNS }));
        rows.push(`| ${mb} MB | ${driver ?? 'default'} | ${ms.toFixed(0)} |`);
      }
    }
    console.log(`\n| rootfs | storage driver | one-file RUN step, median ms (${RUNS} steps) |\n|---:|---|---:|\n${rows.join('\n')}`);
  } finally {
    // Layers hold files owned by subordinate uids and read-only folders: rm -rf as root copes.
    execFileSync('rm', ['-rf', work]);
  }
}

await main();
