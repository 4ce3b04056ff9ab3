/**
 * The sandbox's own cost per RUN step. Builds a Dockerfile of N `RUN true` steps in a fresh
 * store (the Step lines' arrival times give each step's wall time), then runs `true` in the
 * sandbox once over each prefix of the same layer chain, timing only the sandbox call (spec,
 * shim, namespaces, idmapped mounts, overlay, runtime, teardown, owner shift): that is the
 * step minus the commit. Prints one JSON line per figure, then a table.
 *
 * The sandbox is the one of the tree `--cli` belongs to (`<dist>/src/cli/main.js`): its OCI
 * runtime sandbox (`src/sandbox/container.js`), or, for a CLI from before it (commit 5b1a9d9 and
 * older), its `unshare` sandbox (`src/snapshot/sandbox.js`), so old and new are measured alike.
 *
 * `--floor N` adds the floor under that figure: crun's own `run` of the same step's spec, N times
 * in a loop inside the step's sandbox (bench/crun-floor.sh, passed to the sandbox as its runtime).
 *
 *   node dist/bench/sandbox-cost.js [--steps 100] [--network default|none] [--runtime PATH] [--cli PATH] [--floor N]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, execFileSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { ContainerRun, ContainerResult } from '../src/sandbox/container.js';
import type { NetworkMode } from '../src/sandbox/oci-spec.js';
import { median, quantile } from './stats.js';

const { values } = parseArgs({
  options: { steps: { type: 'string' }, network: { type: 'string' }, runtime: { type: 'string' }, cli: { type: 'string' }, base: { type: 'string' }, floor: { type: 'string' } },
});
const STEPS = Number(values.steps ?? 100);
const NETWORK = (values.network ?? 'default') as NetworkMode;
const CLI = path.resolve(values.cli ?? fileURLToPath(new URL('../src/cli/main.js', import.meta.url)));
const ROOTFS_SCRIPT = fileURLToPath(new URL('../../scripts/make-busybox-rootfs.sh', import.meta.url));
const FLOOR_SCRIPT = fileURLToPath(new URL('../../bench/crun-floor.sh', import.meta.url));
const FLOOR = values.floor !== undefined ? Number(values.floor) : 0;
if (!Number.isInteger(FLOOR) || FLOOR < 0) throw new Error(`--floor wants a count of runs: ${values.floor}`);



/** Runs the build; returns the milliseconds between consecutive `Step n/N` lines (one per RUN step). */
function timedBuild(root: string, ctx: string): Promise<{ total: number; perStep: number[] }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const marks: number[] = [];
    const args = [CLI, '--root', root, 'build', '--network', NETWORK, ...(values.runtime ? ['--runtime', values.runtime] : []), '-t', 'sandbox-cost', ctx];
    const c = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let buf = '';
    c.stdout.on('data', (b: Buffer) => {
      buf += b.toString();
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        if (/^(Step \d+\/\d+ : |Successfully built )/.test(buf.slice(0, nl))) marks.push(performance.now());
        buf = buf.slice(nl + 1);
      }
    });
    c.on('error', reject);
    c.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`build failed (${code})`));
      // marks: Step 1 (FROM), Step 2..N+1 (RUN), Successfully built: RUN k lasts marks[k+1]-marks[k].
      const perStep = marks.slice(1).map((m, i) => m - marks[i]!).slice(1);
      resolve({ total: performance.now() - t0, perStep });
    });
  });
}

/** The layer dirs of an image and its parents, top first. */
function chain(root: string, id: string): string[] {
  const dirs: string[] = [];
  for (let cur: string | undefined = id; cur; ) {
    dirs.push(path.join(root, 'graph', cur, 'layer'));
    cur = (JSON.parse(fs.readFileSync(path.join(root, 'graph', cur, 'json'), 'utf8')) as { parent?: string }).parent;
  }
  return dirs;
}

/** One `true` in a CLI tree's sandbox over the given layers; resolves with its exit code. */
type SandboxRun = (layers: { lowerDirs: string[]; upperDir: string; scratchDir: string }) => Promise<number>;
/** The unshare sandbox of a CLI from before the OCI runtime (commit 5b1a9d9 and older). */
type LegacyRunInSandbox = (spec: Omit<ContainerRun, 'network' | 'sandbox'> & { network: 'host' | 'none' }) => Promise<ContainerResult>;

const TRUE_STEP = {
  argv: ['/bin/sh', '-c', 'true'], env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
  uid: 0, gid: 0, cwd: '/', hostname: 'bench',
};

/**
 * The sandbox of the tree `CLI` belongs to, and the network mode it really runs with. The legacy
 * sandbox knows only `host` (its default: no network namespace) and `none`, and no `--runtime`.
 */
async function loadSandbox(): Promise<{ kind: string; network: string; run: SandboxRun }> {
  const src = path.dirname(path.dirname(CLI));
  const container = path.join(src, 'sandbox', 'container.js');
  const legacy = path.join(src, 'snapshot', 'sandbox.js');
  if (fs.existsSync(container)) {
    const { runContainer } = (await import(pathToFileURL(container).href)) as { runContainer: (r: ContainerRun) => Promise<ContainerResult> };
    const sandbox = values.runtime ? { sandbox: { runtime: values.runtime } } : {};
    return { kind: 'oci', network: NETWORK, run: async (l) => (await runContainer({ ...l, ...TRUE_STEP, network: NETWORK, ...sandbox })).exitCode };
  }
  if (fs.existsSync(legacy)) {
    if (values.runtime) throw new Error(`${CLI} predates the OCI runtime sandbox: --runtime does not apply to it`);
    if (FLOOR > 0) throw new Error(`${CLI} predates the OCI runtime sandbox: --floor does not apply to it`);
    const network = NETWORK === 'none' ? 'none' : 'host';
    const { runInSandbox } = (await import(pathToFileURL(legacy).href)) as { runInSandbox: LegacyRunInSandbox };
    return { kind: 'unshare', network, run: async (l) => (await runInSandbox({ ...l, ...TRUE_STEP, network })).exitCode };
  }
  throw new Error(`no sandbox next to ${CLI}: neither ${container} nor ${legacy} exists (pass --cli <dist>/src/cli/main.js)`);
}

async function sandboxOnly(root: string, id: string, runTrue: SandboxRun): Promise<number[]> {
  const layers = chain(root, id);
  const scratchBase = fs.mkdtempSync(path.join(root, 'graph', '_tmp', 'bench-'));
  const times: number[] = [];
  // Step k of the build ran over the k lowest layers: repeat that, shallow to deep.
  for (let k = layers.length - STEPS; k <= layers.length - 1; k++) {
    const lowers = layers.slice(layers.length - k);
    const d = path.join(scratchBase, String(k));
    fs.mkdirSync(path.join(d, 'upper'), { recursive: true });
    fs.mkdirSync(path.join(d, 'scratch'));
    const t0 = performance.now();
    const code = await runTrue({ lowerDirs: lowers, upperDir: path.join(d, 'upper'), scratchDir: path.join(d, 'scratch') });
    times.push(performance.now() - t0);
    if (code !== 0) throw new Error(`true exited ${code}`);
    fs.rmSync(d, { recursive: true, force: true });
  }
  fs.rmSync(scratchBase, { recursive: true, force: true });
  return times;
}

/**
 * crun's own `run` of the deepest step's spec, FLOOR times, inside that step's sandbox: the OCI
 * sandbox of this tree with bench/crun-floor.sh as its runtime. Returns the durations (ms).
 */
async function crunFloor(root: string, id: string): Promise<number[]> {
  const src = path.dirname(path.dirname(CLI));
  const { runContainer } = (await import(pathToFileURL(path.join(src, 'sandbox', 'container.js')).href)) as { runContainer: (r: ContainerRun) => Promise<ContainerResult> };
  const d = fs.mkdtempSync(path.join(root, 'graph', '_tmp', 'floor-'));
  try {
    fs.mkdirSync(path.join(d, 'upper'));
    fs.mkdirSync(path.join(d, 'scratch'));
    fs.writeFileSync(path.join(d, 'scratch', 'floor-n'), `${FLOOR}\n`);
    const res = await runContainer({ lowerDirs: chain(root, id), upperDir: path.join(d, 'upper'), scratchDir: path.join(d, 'scratch'), ...TRUE_STEP, network: NETWORK, sandbox: { runtime: FLOOR_SCRIPT } });
    if (res.exitCode !== 0) throw new Error(`the crun loop exited ${res.exitCode}`);
    return fs.readFileSync(path.join(d, 'scratch', 'floor.txt'), 'utf8').trim().split('\n').map(Number);
  } finally {
    fs.rmSync(d, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const sandboxRun = await loadSandbox(); // first: a refused option fails before any work
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'slipway-sandbox-cost-'));
  try {
    const base = values.base ?? path.join(work, 'busybox.tar');
    if (!values.base) execFileSync('bash', [ROOTFS_SCRIPT, base], { stdio: ['ignore', 'ignore', 'inherit'] });
    const root = path.join(work, 'root');
    execFileSync(process.execPath, [CLI, '--root', root, 'import', '--change', 'CMD ["sh"]', base, 'busybox:latest'], { stdio: 'ignore' });
    const ctx = path.join(work, 'ctx');
    fs.mkdirSync(ctx);
    fs.writeFileSync(path.join(ctx, 'Dockerfile'), `FROM busybox\n${'RUN true\n'.repeat(STEPS)}`);
    const build = await timedBuild(root, ctx);
    const id = (JSON.parse(fs.readFileSync(path.join(root, 'repositories'), 'utf8')) as { Repositories: Record<string, Record<string, string>> }).Repositories['sandbox-cost']!['latest']!;
    // The OCI sandbox's prepared network namespaces (src/sandbox/warm-network.ts) hold no ref on
    // the event loop: a step that waits for them in a process with nothing else to do lets Node
    // exit, with code 0, in the middle of the loop. The CLI always has its worker threads; this
    // program keeps a timer instead, which costs the steps nothing.
    const keepAlive = setInterval(() => undefined, 1000);
    const sandbox = await sandboxOnly(root, id, sandboxRun.run).finally(() => clearInterval(keepAlive));
    const floor = FLOOR > 0 && sandboxRun.kind === 'oci' ? await crunFloor(root, id) : [];
    const rows = [
      { figure: 'build: wall time per RUN step', ms: median(build.perStep), p90: quantile(build.perStep, 0.9), n: build.perStep.length },
      { figure: 'sandbox alone per step (the step minus the commit)', ms: median(sandbox), p90: quantile(sandbox, 0.9), n: sandbox.length },
      ...(floor.length > 0 ? [{ figure: 'floor: crun run of the same spec, in a loop', ms: median(floor), p90: quantile(floor, 0.9), n: floor.length }] : []),
    ];
    const meta = { cli: CLI, sandbox: sandboxRun.kind, network: sandboxRun.network, runtime: values.runtime ?? 'auto', totalBuildSeconds: build.total / 1000 };
    for (const r of rows) process.stdout.write(`${JSON.stringify({ ...r, ...meta })}\n`);
    process.stdout.write(`\n| figure (${STEPS} RUN true steps, ${sandboxRun.kind} sandbox, network ${sandboxRun.network}) | median ms | p90 ms |\n|---|---:|---:|\n`);
    for (const r of rows) process.stdout.write(`| ${r.figure} | ${r.ms.toFixed(1)} | ${r.p90.toFixed(1)} |\n`);
    process.stdout.write(`| whole build | ${(build.total).toFixed(0)} | |\n`);
    process.stdout.write(`\ntarget: sandbox alone ≤ 40 ms per step\n`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

let finished = false;
// An exit with main() unsettled (the event loop ran dry while awaiting) is a failure, never a silent 0.
process.on('exit', (code) => {
  if (finished || code !== 0) return;
  process.stderr.write('sandbox-cost: exited before finishing (the event loop ran dry while a step was awaited)\n');
  process.exitCode = 1;
});

main().then(() => (finished = true), (e: unknown) => {
  finished = true;
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
