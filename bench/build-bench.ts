#!/usr/bin/env node
/**
 * Build benchmark: wall-clock seconds of Slipway builds on the corpus (/work/shared/bench/corpus),
 * side by side with the peers installed on this machine: Docker's legacy builder
 * (DOCKER_BUILDKIT=0), BuildKit (DOCKER_BUILDKIT=1) and buildah (`bud --layers --isolation chroot`).
 * Every builder starts from the same busybox rootfs tar, imported untimed.
 *
 *   node dist/bench/build-bench.js [--runs N] [--only REGEX] [--peers docker,buildah] [--modes cold,warm,touched]
 *                                  [--cli PATH] [--corpus DIR] [--base ROOTFS.tar] [--steps]
 *
 * Prints one JSON line per measurement ({entry, mode, builder, seconds, runs, samples}), then a
 * Markdown table of slipway/best-peer ratios. It never asserts. Everything it creates lives in one
 * temp dir, including a private dockerd, which it stops (and unmounts and deletes) on exit and Ctrl-C.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

type Mode = 'cold' | 'warm' | 'touched';
type BuilderName = 'slipway' | 'docker-legacy' | 'buildkit' | 'buildah';
const MODES: readonly Mode[] = ['cold', 'warm', 'touched'];
const PEERS: readonly BuilderName[] = ['docker-legacy', 'buildkit', 'buildah'];
/** The project's targets: slipway seconds / best peer seconds. */
const TARGET: Record<Mode, number> = { cold: 0.8, warm: 0.5, touched: 0.5 };
const DEFAULT_RUNS: Record<Mode, number> = { cold: 3, warm: 5, touched: 3 };
/** The file each corpus entry changes in "touched" mode (bench/README.md of the corpus); none = no touched mode. */
const TOUCHED: Record<string, string | undefined> = {
  seed: undefined, 'many-steps': 'base.txt', 'big-context': 'data/d07/f0742.bin',
  'multi-stage': 'input.txt', 'layer-heavy': 'params.txt', 'cache-probe': 'probe.txt',
};
// Lines that open a step in legacy-format output (Slipway, docker legacy) and in buildah's.
const STEP_LINE = /^(Step \d+\/\d+ :|STEP \d+\/\d+:)/;

interface Entry { name: string; dir: string; touched?: string; original?: Buffer }
interface RunResult { code: number | null; seconds: number; output: string; steps: { at: number; text: string }[] }
interface Builder {
  name: BuilderName;
  /** Untimed: drop this entry's cache (the base image stays). */
  reset(e: Entry): Promise<void>;
  /** The timed build; `cold` adds --no-cache for the peers (Slipway's reset already gives it an empty store). */
  build(e: Entry, cold: boolean): Promise<RunResult>;
  /** Untimed: frees what the entry left behind. */
  finish(e: Entry): Promise<void>;
}
interface Measurement { entry: string; mode: Mode; builder: BuilderName; seconds: number | null; runs: number; samples: number[]; error?: string }

class Interrupted extends Error {}

// ---- child processes ------------------------------------------------------------------------

const live = new Set<ChildProcess>();
let interrupted = false;

/**
 * Runs a command in its own process group (so a terminal Ctrl-C reaches only us, and we stop
 * children in order), timing spawn → exit and stamping the step lines of its stdout.
 */
function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; cleanup?: boolean } = {}): Promise<RunResult> {
  if (interrupted && !opts.cleanup) return Promise.reject(new Interrupted('interrupted'));
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    live.add(child);
    let output = '';
    let partial = '';
    let exitAt = 0;
    let settled = false;
    const steps: RunResult['steps'] = [];
    const keep = (s: string) => {
      output += s;
      if (output.length > 256_000) output = output.slice(-128_000);
    };
    child.stdout!.setEncoding('utf8').on('data', (s: string) => {
      const at = round((performance.now() - t0) / 1000);
      keep(s);
      const lines = (partial + s).split('\n');
      partial = lines.pop()!;
      for (const l of lines) if (STEP_LINE.test(l)) steps.push({ at, text: l.slice(0, 72) });
    });
    child.stderr!.setEncoding('utf8').on('data', keep);
    child.on('error', (e) => {
      live.delete(child);
      if (settled) return;
      settled = true;
      reject(e);
    });
    child.on('exit', () => (exitAt = performance.now()));
    child.on('close', (code) => {
      live.delete(child);
      if (settled) return;
      settled = true;
      resolve({ code, seconds: ((exitAt || performance.now()) - t0) / 1000, output, steps });
    });
  });
}

/** Like `run`, but a non-zero exit is an error carrying the output's tail. */
async function must(cmd: string, args: string[], opts: Parameters<typeof run>[2] = {}): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${path.basename(cmd)} ${args.join(' ')}: exit ${r.code}\n${tail(r.output, 30)}`);
  return r;
}

function tail(text: string, lines: number): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(':')) {
    const p = path.join(dir || '.', name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch { /* next */ }
  }
  return undefined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true;
  return Promise.race([new Promise<boolean>((r) => child.once('exit', () => r(true))), sleep(ms).then(() => false)]);
}

/**
 * Stops one child: `sig` to it alone (so dockerd stops its containerd, and Slipway its sandboxes,
 * in their own order), then SIGKILL to its whole process group once it has exited or after `ms`.
 */
async function stopChild(child: ChildProcess, sig: NodeJS.Signals, ms: number): Promise<void> {
  if (child.pid === undefined) return;
  if (child.exitCode === null && child.signalCode === null) child.kill(sig);
  await waitExit(child, ms);
  try {
    process.kill(-child.pid, 'SIGKILL'); // the leader if it hung, and stragglers of its group
  } catch { /* group already empty */ }
}

// ---- builders -------------------------------------------------------------------------------

interface Ctx { work: string; cli: string; baseTar: string }

const tagOf = (e: Entry, b: BuilderName) => `bench-${e.name}:${b}`;

function slipwayBuilder(ctx: Ctx): Builder {
  const rootOf = (e: Entry) => path.join(ctx.work, 'slipway', e.name);
  const cli = (e: Entry, ...args: string[]) => [ctx.cli, '--root', rootOf(e), ...args];
  return {
    name: 'slipway',
    async reset(e) {
      await fsp.rm(rootOf(e), { recursive: true, force: true });
      await must(process.execPath, cli(e, 'import', '--change', 'CMD ["sh"]', ctx.baseTar, 'busybox:latest'));
    },
    build: (e) => run(process.execPath, cli(e, 'build', '-t', tagOf(e, 'slipway'), e.dir)),
    finish: (e) => fsp.rm(rootOf(e), { recursive: true, force: true }),
  };
}

interface Dockerd { child: ChildProcess; env: NodeJS.ProcessEnv; cli: string }

/** A private dockerd (bridge none, no iptables) whose every path lives under `dir`. */
async function startDockerd(dir: string, cli: string): Promise<Dockerd> {
  await fsp.mkdir(path.join(dir, 'config'), { recursive: true });
  const log = fs.openSync(path.join(dir, 'dockerd.log'), 'a');
  const sock = path.join(dir, 'docker.sock');
  const child = spawn('dockerd', ['--bridge=none', '--iptables=false', '--data-root', path.join(dir, 'data'),
    '--exec-root', path.join(dir, 'exec'), '--pidfile', path.join(dir, 'docker.pid'), '-H', `unix://${sock}`],
  { stdio: ['ignore', log, log], detached: true });
  fs.closeSync(log);
  live.add(child);
  child.on('exit', () => live.delete(child));
  const d: Dockerd = { child, cli, env: { DOCKER_HOST: `unix://${sock}`, DOCKER_CONFIG: path.join(dir, 'config') } };
  for (let i = 0; i < 120; i++) {
    if (child.exitCode !== null) break;
    if ((await run(cli, ['version'], { env: d.env })).code === 0) return d;
    await sleep(250);
  }
  const logText = fs.readFileSync(path.join(dir, 'dockerd.log'), 'utf8');
  await stopChild(child, 'SIGTERM', 10_000);
  throw new Error(`dockerd did not come up:\n${tail(logText, 20)}`);
}

function dockerBuilder(d: Dockerd, name: 'docker-legacy' | 'buildkit'): Builder {
  const docker = (args: string[], env: NodeJS.ProcessEnv = {}) => run(d.cli, args, { env: { ...d.env, ...env } });
  const drop = async (e: Entry) => {
    await docker(['rmi', '-f', tagOf(e, name)]);
    await docker(['image', 'prune', '-f']);
    await docker(['builder', 'prune', '-af']); // BuildKit's cache, context transfers included
  };
  return {
    name,
    reset: drop,
    build: (e, cold) => docker(['build', ...(cold ? ['--no-cache'] : []),
      // dockerd runs with --bridge=none: BuildKit's RUN needs no network; legacy uses the default
      ...(name === 'buildkit' ? ['--network=none', '--progress=plain'] : []), '-t', tagOf(e, name), e.dir],
    { DOCKER_BUILDKIT: name === 'buildkit' ? '1' : '0' }),
    finish: drop,
  };
}

/** buildah with private storage under `dir`; the base is the rootfs tar added to `scratch`. */
async function buildahBuilder(dir: string, baseTar: string): Promise<Builder> {
  const bh = (args: string[], cleanup = false) => run('buildah', ['--root', path.join(dir, 'root'), '--runroot', path.join(dir, 'run'),
    '--storage-driver', 'overlay', ...args], { cleanup });
  const ok = async (args: string[]) => {
    const r = await bh(args);
    if (r.code !== 0) throw new Error(`buildah ${args.join(' ')}: exit ${r.code}\n${tail(r.output, 20)}`);
    return r.output.trim();
  };
  const ctr = (await ok(['from', '--quiet', 'scratch'])).split('\n').pop()!;
  await ok(['add', '--quiet', ctr, baseTar, '/']); // a local tar is extracted, as in ADD
  await ok(['config', '--cmd', '["sh"]', ctr]);
  await ok(['commit', '--quiet', ctr, 'docker.io/library/busybox:latest']);
  await ok(['rm', ctr]);
  const drop = async (e: Entry) => {
    await bh(['rmi', '-f', tagOf(e, 'buildah')]);
    await bh(['rmi', '--prune']);
  };
  buildahCleanup = async () => {
    await bh(['rm', '--all'], true);
    await bh(['umount', '--all'], true);
  };
  return {
    name: 'buildah',
    reset: drop,
    build: (e, cold) => bh(['bud', '--layers', '--isolation', 'chroot', '--pull=never', ...(cold ? ['--no-cache'] : []),
      '-t', tagOf(e, 'buildah'), e.dir]),
    finish: drop,
  };
}

let buildahCleanup: (() => Promise<void>) | undefined;
let dockerd: Dockerd | undefined;

// ---- cleanup --------------------------------------------------------------------------------

/** Stops every child, dockerd last, then unmounts and deletes the work dir: nothing survives us. */
async function cleanup(work: string | undefined): Promise<void> {
  await Promise.all([...live].filter((c) => c !== dockerd?.child).map((c) => stopChild(c, 'SIGINT', 15_000)));
  if (buildahCleanup) await buildahCleanup().catch(() => undefined);
  if (dockerd) await stopChild(dockerd.child, 'SIGTERM', 30_000);
  if (!work) return;
  // Any process still naming our dir (a containerd-shim that outlived dockerd) was started by us.
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid)) {
    try {
      if (fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(work)) process.kill(Number(pid), 'SIGKILL');
    } catch { /* gone */ }
  }
  const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '')
    .map((m) => m.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((m) => m === work || m.startsWith(work + '/')).sort((a, b) => b.length - a.length);
  for (const m of mounts) {
    if ((await run('umount', [m], { cleanup: true })).code !== 0) await run('umount', ['-l', m], { cleanup: true });
  }
  await fsp.rm(work, { recursive: true, force: true, maxRetries: 3 });
  // buildah also writes a blob-info cache to /var/lib/containers/cache whatever --root says; it is
  // left alone, since another buildah on the machine may share it.
}

// ---- corpus ---------------------------------------------------------------------------------

async function copyCorpus(corpus: string, only: RegExp, work: string): Promise<Entry[]> {
  const names = fs.readdirSync(corpus).filter((n) => fs.existsSync(path.join(corpus, n, 'Dockerfile')) && only.test(n));
  const order = Object.keys(TOUCHED);
  names.sort((a, b) => (order.indexOf(a) + 1 || 99) - (order.indexOf(b) + 1 || 99) || a.localeCompare(b));
  const entries: Entry[] = [];
  for (const name of names) {
    const dir = path.join(work, 'corpus', name);
    await fsp.cp(path.join(corpus, name), dir, { recursive: true });
    await must('chmod', ['-R', 'u+w', dir]); // the shared corpus is read-only
    if (fs.existsSync(path.join(dir, 'gen-context.sh'))) {
      const r = await must('sh', ['gen-context.sh'], { cwd: dir });
      log(`${name}: gen-context.sh made its data in ${r.seconds.toFixed(1)} s`);
    }
    const touched = TOUCHED[name];
    entries.push({ name, dir, ...(touched ? { touched, original: fs.readFileSync(path.join(dir, touched)) } : {}) });
  }
  return entries;
}

/** New content for the entry's named file: the original plus a line no earlier run has seen. */
function touch(e: Entry): void {
  const nonce = crypto.randomBytes(8).toString('hex');
  fs.writeFileSync(path.join(e.dir, e.touched!), Buffer.concat([e.original!, Buffer.from(`\ntouched ${nonce}\n`)]));
}

function findUp(from: string, rel: string): string | undefined {
  for (let dir = path.dirname(from); ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, rel))) return path.join(dir, rel);
    if (dir === path.dirname(dir)) return undefined;
  }
}

function log(msg: string): void {
  process.stderr.write(`# ${msg}\n`);
}

// ---- measuring ------------------------------------------------------------------------------

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** One entry × mode for every active builder, round-robin so drift and page cache hit all alike. */
async function measure(e: Entry, mode: Mode, runs: number, active: Builder[], opts: { steps: boolean; primed: Set<BuilderName> }): Promise<Measurement[]> {
  const samples = new Map<BuilderName, number[]>(active.map((b) => [b.name, []]));
  const failed = new Map<BuilderName, string>();
  const fail = (b: Builder, r: RunResult, what: string) => {
    failed.set(b.name, `${what}: exit ${r.code}: ${tail(r.output, 3).replace(/\s+/g, ' ').slice(0, 300)}`);
    log(`${e.name} ${mode} ${b.name} FAILED (${what}), exit ${r.code}; output:\n${tail(r.output, 40)}`);
  };
  if (mode !== 'cold') {
    for (const b of active) {
      if (!opts.primed.has(b.name)) await b.reset(e);
      const r = await b.build(e, false); // untimed: everything cached from here on
      if (r.code !== 0) fail(b, r, 'priming build');
      else opts.primed.add(b.name);
    }
  }
  for (let i = 0; i < runs; i++) {
    if (mode === 'touched') touch(e);
    const ok = active.filter((b) => !failed.has(b.name));
    for (let j = 0; j < ok.length; j++) {
      const b = ok[(i + j) % ok.length]!;
      if (mode === 'cold') await b.reset(e);
      const r = await b.build(e, mode === 'cold');
      if (interrupted) throw new Interrupted('interrupted');
      if (r.code !== 0) {
        fail(b, r, `run ${i + 1}`);
        continue;
      }
      samples.get(b.name)!.push(round(r.seconds));
      log(`${e.name} ${mode} ${b.name} run ${i + 1}/${runs}: ${r.seconds.toFixed(3)} s`);
      if (opts.steps) console.log(JSON.stringify({ entry: e.name, mode, builder: b.name, run: i + 1, seconds: round(r.seconds), steps: r.steps }));
    }
  }
  if (mode === 'cold') for (const b of active) opts.primed.add(b.name);
  return active.map((b) => {
    const xs = samples.get(b.name)!;
    const err = failed.get(b.name);
    return { entry: e.name, mode, builder: b.name, seconds: err ? null : round(median(xs)), runs: xs.length, samples: xs, ...(err ? { error: err } : {}) };
  });
}

function table(results: Measurement[], builders: BuilderName[]): string {
  const peers: BuilderName[] = builders.filter((b) => b !== 'slipway');
  const fmt = (x: number | null | undefined) => (x === null || x === undefined ? '–' : x.toFixed(2));
  const rows = [`| entry | mode | ${builders.join(' | ')} | best peer | slipway/best | target | |`,
    `|${'---|'.repeat(builders.length + 6)}`];
  const keys = [...new Set(results.map((r) => `${r.entry}\t${r.mode}`))];
  for (const k of keys) {
    const [entry, mode] = k.split('\t') as [string, Mode];
    const get = (b: BuilderName) => results.find((r) => r.entry === entry && r.mode === mode && r.builder === b)?.seconds;
    const best = peers.map((b) => ({ b, s: get(b) })).filter((x): x is { b: BuilderName; s: number } => typeof x.s === 'number')
      .sort((x, y) => x.s - y.s)[0];
    const sw = get('slipway');
    const ratio = best && typeof sw === 'number' ? sw / best.s : undefined;
    const verdict = ratio === undefined ? '' : ratio <= TARGET[mode] ? 'met' : `missed (${(ratio / TARGET[mode]).toFixed(1)}× too slow)`;
    rows.push(`| ${entry} | ${mode} | ${builders.map((b) => fmt(get(b))).join(' | ')} | ${best ? `${best.b} ${fmt(best.s)}` : '–'} | ${ratio === undefined ? '–' : `${ratio.toFixed(2)}×`} | ≤ ${TARGET[mode]}× | ${verdict} |`);
  }
  return rows.join('\n');
}

// ---- main -----------------------------------------------------------------------------------

function parsePeers(list: string): BuilderName[] {
  const out = new Set<BuilderName>();
  for (const p of list.split(',').map((s) => s.trim()).filter((s) => s && s !== 'none')) {
    if (p === 'docker') out.add('docker-legacy').add('buildkit');
    else if (p === 'legacy' || p === 'docker-legacy') out.add('docker-legacy');
    else if ((PEERS as string[]).includes(p)) out.add(p as BuilderName);
    else throw new Error(`unknown peer ${p}: docker, docker-legacy, buildkit, buildah or none`);
  }
  return PEERS.filter((p) => out.has(p));
}

async function setUpPeers(wanted: BuilderName[], ctx: Ctx, dockerCli: string): Promise<Builder[]> {
  const out: Builder[] = [];
  const wantsDocker = wanted.filter((p): p is 'docker-legacy' | 'buildkit' => p !== 'buildah');
  if (wantsDocker.length > 0) {
    if (!onPath('dockerd') || !fs.existsSync(dockerCli)) log('docker peers skipped: dockerd or the docker client is not installed');
    else {
      try {
        dockerd = await startDockerd(path.join(ctx.work, 'docker'), dockerCli);
        await must(dockerCli, ['import', '--change', 'CMD ["sh"]', ctx.baseTar, 'busybox:latest'], { env: dockerd.env });
        for (const p of wantsDocker) out.push(dockerBuilder(dockerd, p));
      } catch (e) {
        if (e instanceof Interrupted) throw e;
        log(`docker peers skipped: ${(e as Error).message}`);
      }
    }
  }
  if (wanted.includes('buildah')) {
    if (!onPath('buildah')) log('buildah skipped: not installed');
    else {
      try {
        out.push(await buildahBuilder(path.join(ctx.work, 'buildah'), ctx.baseTar));
      } catch (e) {
        if (e instanceof Interrupted) throw e;
        log(`buildah skipped: ${(e as Error).message}`);
      }
    }
  }
  return out;
}

/** Untimed: one tiny build per builder, so first-use costs (page cache, daemon warm-up) hit nobody's figures; a builder that fails here is dropped. */
async function probe(builders: Builder[], work: string): Promise<Builder[]> {
  const dir = path.join(work, 'corpus', '.probe');
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(path.join(dir, 'Dockerfile'), 'FROM busybox\nRUN true\n');
  const e: Entry = { name: 'probe', dir };
  const ok: Builder[] = [];
  for (const b of builders) {
    await b.reset(e);
    const r = await b.build(e, true);
    if (r.code === 0) ok.push(b);
    else log(`${b.name} skipped: probe build failed (exit ${r.code}):\n${tail(r.output, 20)}`);
    await b.finish(e);
  }
  return ok;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string' }, only: { type: 'string' }, peers: { type: 'string' }, modes: { type: 'string' },
      cli: { type: 'string' }, corpus: { type: 'string' }, base: { type: 'string' }, 'docker-cli': { type: 'string' },
      steps: { type: 'boolean' },
    },
  });
  const runsOverride = values.runs !== undefined ? Number(values.runs) : undefined;
  if (runsOverride !== undefined && !(Number.isInteger(runsOverride) && runsOverride > 0)) throw new Error('--runs takes a positive integer');
  const modes = (values.modes ?? MODES.join(',')).split(',').map((m) => m.trim()) as Mode[];
  for (const m of modes) if (!MODES.includes(m)) throw new Error(`unknown mode ${m}: cold, warm or touched`);
  const wantedPeers = parsePeers(values.peers ?? 'docker,buildah');
  const cli = path.resolve(values.cli ?? fileURLToPath(new URL('../src/cli/main.js', import.meta.url)));
  if (!fs.existsSync(cli)) throw new Error(`no Slipway CLI at ${cli} (build it, or pass --cli PATH)`);
  const corpus = path.resolve(values.corpus ?? '/work/shared/bench/corpus');
  const dockerCli = values['docker-cli'] ?? (fs.existsSync('/usr/bin/docker') ? '/usr/bin/docker' : onPath('docker') ?? '/usr/bin/docker');

  const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'slipway-bench-'));
  let cleaning: Promise<void> | undefined;
  const cleanOnce = () => (cleaning ??= cleanup(work));
  const onSignal = (sig: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    log(`${sig}: stopping builds and peers, cleaning up ${work}`);
    void cleanOnce().finally(() => process.exit(130));
  };
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, onSignal);

  try {
    let baseTar = values.base ? path.resolve(values.base) : undefined;
    if (!baseTar) {
      const script = findUp(cli, 'scripts/make-busybox-rootfs.sh') ?? findUp(fileURLToPath(import.meta.url), 'scripts/make-busybox-rootfs.sh');
      if (!script) throw new Error('scripts/make-busybox-rootfs.sh not found; pass --base ROOTFS.tar');
      baseTar = path.join(work, 'busybox-rootfs.tar');
      await must('bash', [script, baseTar]);
    }
    const ctx: Ctx = { work, cli, baseTar };
    const entries = await copyCorpus(corpus, new RegExp(values.only ?? '.'), work);
    const builders = await probe([slipwayBuilder(ctx), ...(await setUpPeers(wantedPeers, ctx, dockerCli))], work);
    if (!builders.some((b) => b.name === 'slipway')) throw new Error('the Slipway probe build failed; see above');
    log(`builders: ${builders.map((b) => b.name).join(', ')}; entries: ${entries.map((e) => e.name).join(', ')}`);

    const results: Measurement[] = [];
    for (const e of entries) {
      // Other work on the machine skews everyone's seconds; the load average says how much.
      log(`${e.name}: load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
      let active = builders;
      const primed = new Set<BuilderName>();
      for (const mode of modes) {
        if (mode === 'touched' && !e.touched) continue;
        const ms = await measure(e, mode, runsOverride ?? DEFAULT_RUNS[mode], active, { steps: values.steps ?? false, primed });
        for (const m of ms) console.log(JSON.stringify(m));
        results.push(...ms);
        // A builder that failed has no cache state worth measuring further on this entry.
        active = active.filter((b) => !ms.some((m) => m.builder === b.name && m.error));
      }
      for (const b of builders) await b.finish(e);
    }
    console.log('');
    console.log(table(results, builders.map((b) => b.name)));
  } catch (e) {
    if (!(e instanceof Interrupted)) throw e;
  } finally {
    if (!interrupted) await cleanOnce();
  }
}

main().catch((e) => {
  process.stderr.write(`build-bench: ${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
});
