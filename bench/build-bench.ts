#!/usr/bin/env node
/**
 * Build benchmark: wall-clock seconds of Slipway builds on the corpus (/work/shared/bench/corpus),
 * side by side with the peers installed on this machine: Docker's legacy builder
 * (DOCKER_BUILDKIT=0), BuildKit (DOCKER_BUILDKIT=1) and buildah (`bud --layers --isolation chroot`).
 * Every builder starts from the same busybox rootfs tar, imported untimed.
 *
 *   node dist/bench/build-bench.js [--runs N] [--only REGEX] [--peers docker,buildah] [--modes cold,warm,touched]
 *                                  [--cli PATH] [--baseline-cli PATH] [--main-cli PATH] [--engine]
 *                                  [--corpus DIR] [--base ROOTFS.tar] [--steps]
 *
 * `slipway` is a standalone `slipway build` process per build (SLIPWAY_ENGINE=off). `--engine`
 * adds `slipway-engine`: the same CLI through its resident engine (`serve` on the entry's root,
 * started untimed), and `slipway-main-engine` with `--main-cli`. `--baseline-cli` adds
 * `slipway-before`, `--main-cli` adds `slipway-main` (another tree's CLI, measured the same way).
 *
 * Prints one JSON line per measurement ({entry, mode, builder, seconds, runs, samples}), then a
 * Markdown table of slipway/best-peer ratios (and how many times faster than the baseline and
 * main CLIs). It never asserts. Everything it creates lives in one temp dir, including a private dockerd, which it stops
 * (and unmounts and deletes) on exit and Ctrl-C.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { Interrupted, interrupt, isInterrupted, live, must, onPath, round, run, stopChild, tail, type RunResult } from './child-run.js';
import { buildahBuilder, dockerBuilder, slipwayBuilder, slipwayEngineBuilder, startDockerd, type Builder, type BuilderName, type Ctx, type Dockerd, type Entry } from './builders.js';
import { median } from './stats.js';

type Mode = 'cold' | 'warm' | 'touched';
/** Slipway itself (standalone and through its engine), the baseline and main CLIs: none is a peer. */
const SLIPWAYS: readonly BuilderName[] = ['slipway', 'slipway-engine', 'slipway-before', 'slipway-main', 'slipway-main-engine'];
/** The ratio columns: [numerator, denominator, heading]; > 1 means the second is that many times faster. */
const SPEEDUPS: ReadonlyArray<[BuilderName, BuilderName, string]> = [
  ['slipway-before', 'slipway', 'before/now'], ['slipway-main', 'slipway', 'main/now'],
  ['slipway-main-engine', 'slipway-engine', 'main-engine/now-engine'],
];
const MODES: readonly Mode[] = ['cold', 'warm', 'touched'];
const PEERS: readonly BuilderName[] = ['docker-legacy', 'buildkit', 'buildah'];
/**
 * The project's targets (issue 13): slipway seconds / best peer seconds. Every entry and mode
 * ≤ 1.0×; the four entries with real work, these tighter ones per mode.
 */
const TARGET: Record<Mode, number> = { cold: 0.8, warm: 0.5, touched: 0.5 };
const TIGHT = new Set(['many-steps', 'big-context', 'multi-stage', 'layer-heavy']);
const targetOf = (entry: string, mode: Mode): number => (TIGHT.has(entry) ? TARGET[mode] : 1);
const DEFAULT_RUNS: Record<Mode, number> = { cold: 3, warm: 5, touched: 3 };
/** The file each corpus entry changes in "touched" mode (bench/README.md of the corpus); none = no touched mode. */
const TOUCHED: Record<string, string | undefined> = {
  seed: undefined, 'many-steps': 'base.txt', 'big-context': 'data/d07/f0742.bin',
  'multi-stage': 'input.txt', 'layer-heavy': 'params.txt', 'cache-probe': 'probe.txt',
};

interface Measurement { entry: string; mode: Mode; builder: BuilderName; seconds: number | null; runs: number; samples: number[]; error?: string }

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
      if (isInterrupted()) throw new Interrupted('interrupted');
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

/** Seconds with two decimals, or – for none. */
function fmt(x: number | null | undefined): string {
  return x === null || x === undefined ? '–' : x.toFixed(2);
}

/** slipway/best peer and the verdict against the target, for one Slipway variant. */
function versusPeers(sw: number | null | undefined, best: { b: BuilderName; s: number } | undefined, target: number): string {
  const ratio = best && typeof sw === 'number' ? sw / best.s : undefined;
  if (ratio === undefined) return '– | ';
  return `${ratio.toFixed(2)}× | ${ratio <= target ? 'met' : `missed (${(ratio / target).toFixed(1)}× too slow)`}`;
}

function table(results: Measurement[], builders: BuilderName[]): string {
  const peers: BuilderName[] = builders.filter((b) => !SLIPWAYS.includes(b));
  const mine = (['slipway', 'slipway-engine'] as const).filter((b) => builders.includes(b));
  const speedups = SPEEDUPS.filter(([a, b]) => builders.includes(a) && builders.includes(b));
  const head = [...builders, 'best peer', ...mine.flatMap((m) => [`${m}/best`, `${m} verdict`]), 'target', ...speedups.map(([, , h]) => h)];
  const rows = [`| entry | mode | ${head.join(' | ')} |`, `|${'---|'.repeat(head.length + 2)}`];
  const keys = [...new Set(results.map((r) => `${r.entry}\t${r.mode}`))];
  for (const k of keys) {
    const [entry, mode] = k.split('\t') as [string, Mode];
    const get = (b: BuilderName) => results.find((r) => r.entry === entry && r.mode === mode && r.builder === b)?.seconds;
    const best = peers.map((b) => ({ b, s: get(b) })).filter((x): x is { b: BuilderName; s: number } => typeof x.s === 'number')
      .sort((x, y) => x.s - y.s)[0];
    const ratio = (a: BuilderName, b: BuilderName) => { const x = get(a); const y = get(b); return typeof x === 'number' && typeof y === 'number' && y > 0 ? `${(x / y).toFixed(2)}×` : '–'; };
    const cells = [...builders.map((b) => fmt(get(b))), best ? `${best.b} ${fmt(best.s)}` : '–', ...mine.map((m) => versusPeers(get(m), best, targetOf(entry, mode))),
      `≤ ${targetOf(entry, mode)}×`, ...speedups.map(([a, b]) => ratio(a, b))];
    rows.push(`| ${entry} | ${mode} | ${cells.join(' | ')} |`);
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
        const bh = await buildahBuilder(path.join(ctx.work, 'buildah'), ctx.baseTar);
        buildahCleanup = bh.cleanup;
        out.push(bh.builder);
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
      cli: { type: 'string' }, 'baseline-cli': { type: 'string' }, 'main-cli': { type: 'string' }, engine: { type: 'boolean' }, corpus: { type: 'string' }, base: { type: 'string' }, 'docker-cli': { type: 'string' },
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
  const baselineCli = values['baseline-cli'] !== undefined ? path.resolve(values['baseline-cli']) : undefined;
  if (baselineCli !== undefined && !fs.existsSync(baselineCli)) throw new Error(`no Slipway CLI at ${baselineCli} (--baseline-cli)`);
  const mainCli = values['main-cli'] !== undefined ? path.resolve(values['main-cli']) : undefined;
  if (mainCli !== undefined && !fs.existsSync(mainCli)) throw new Error(`no Slipway CLI at ${mainCli} (--main-cli)`);
  const corpus = path.resolve(values.corpus ?? '/work/shared/bench/corpus');
  const dockerCli = values['docker-cli'] ?? (fs.existsSync('/usr/bin/docker') ? '/usr/bin/docker' : onPath('docker') ?? '/usr/bin/docker');

  const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'slipway-bench-'));
  let cleaning: Promise<void> | undefined;
  const cleanOnce = () => (cleaning ??= cleanup(work));
  const onSignal = (sig: NodeJS.Signals) => {
    if (isInterrupted()) return;
    interrupt();
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
    const ctx: Ctx = { work, baseTar };
    const entries = await copyCorpus(corpus, new RegExp(values.only ?? '.'), work);
    const slipways = [slipwayBuilder(ctx, 'slipway', cli), ...(values.engine ? [slipwayEngineBuilder(ctx, 'slipway-engine', cli)] : []),
      ...(baselineCli ? [slipwayBuilder(ctx, 'slipway-before', baselineCli)] : []),
      ...(mainCli ? [slipwayBuilder(ctx, 'slipway-main', mainCli), ...(values.engine ? [slipwayEngineBuilder(ctx, 'slipway-main-engine', mainCli)] : [])] : [])];
    const builders = await probe([...slipways, ...(await setUpPeers(wantedPeers, ctx, dockerCli))], work);
    for (const s of slipways) if (!builders.includes(s)) throw new Error(`the ${s.name} probe build failed; see above`);
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
    if (!isInterrupted()) await cleanOnce();
  }
}

main().catch((e) => {
  process.stderr.write(`build-bench: ${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
});
