import { spawn } from 'node:child_process';
import { existsSync, openSync, closeSync } from 'node:fs';
import { chmod, copyFile, cp, lchown, lstat, mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { ENTRY_ATTRS, normalizeImage, type EntryJson, type NormalizedImageJson } from './normalize.js';

/** A case's build.json: how to build it and whether it must succeed. */
export interface BuildSpecJson {
  builder?: 'legacy' | 'buildkit';
  tag: string;
  buildArgs?: Record<string, string>;
  target?: string | null;
  dockerfile?: string;
  expect?: 'success' | 'failure';
  contains?: string;
  pre?: { tag: string; dir: string }[];
  /** BuildKit session inputs (files relative to the case folder): `--secret id=ID,src=FILE`, `--ssh ID=FILE`. */
  secrets?: { id: string; src: string }[];
  ssh?: { id: string; src: string }[];
  noCache?: boolean;
}

/** A case's expected.json, as Docker recorded it. */
export type ExpectedJson =
  | (NormalizedImageJson & { result: 'success'; builder: 'legacy' | 'buildkit'; cachedOnRebuild?: boolean[] | null })
  | { result: 'failure'; builder: string; exitCode: number; message: string; contains: string; line: number | null };

/** One round of a cache sequence's sequence.json. */
export interface RoundJson { mutate?: string; buildArgs?: Record<string, string>; cached: boolean[] }

/** What building a case produced, in the shape the comparison rules talk about. */
export type CaseResult =
  | (NormalizedImageJson & { result: 'success'; exitCode: 0; cachedOnRebuild: boolean[] | null; output: string; rebuildOutput: string })
  | { result: 'failure'; exitCode: number; output: string };

/** The Slipway CLI compiled next to this file: dist/src/cli/main.js under `npm test`. */
export const CLI_PATH = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
/** sha256 of the base rootfs tar the corpus was recorded with (busybox-static 1:1.35.0-4+deb12u1+b1). */
export const BASE_ROOTFS_SHA256 = 'a216177828693b9634f2498386919beb30298fe565d06ad8c7216777cede5d7c';
const BUILD_TIMEOUT_MS = 600_000;
const ANSI = /\x1b\[[0-9;]*m/g;

/**
 * The checkout this test runs from: the compiled file sits in <out>/test/support, and <out>
 * is the checkout's dist/ under `npm test`; compiled elsewhere, the working directory.
 */
export const PROJECT_ROOT = ((): string => {
  for (let dir = dirname(fileURLToPath(import.meta.url)); dirname(dir) !== dir; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'test', 'conformance', 'cases'))) return dir;
  }
  return process.cwd();
})();
/** The corpus: test/conformance of the checkout, or SLIPWAY_CONFORMANCE_DIR. */
export const CORPUS_DIR = resolve(process.env['SLIPWAY_CONFORMANCE_DIR'] ?? join(PROJECT_ROOT, 'test', 'conformance'));
/** Cases in the corpus's shape whose expected results were derived from Docker's documented behaviour, not recorded. */
export const DERIVED_CORPUS_DIR = join(PROJECT_ROOT, 'test', 'conformance-derived');

/** Case folders (holding build.json) or sequence folders (holding sequence.json) of a corpus, sorted by name. */
export async function corpusFolders(part: 'cases' | 'cache', corpus = CORPUS_DIR): Promise<string[]> {
  const marker = part === 'cases' ? 'build.json' : 'sequence.json';
  const dir = join(corpus, part);
  const names = existsSync(dir) ? (await readdir(dir)).sort() : [];
  return names.map((n) => join(dir, n)).filter((d) => existsSync(join(d, marker)));
}

/** Reads and parses a JSON file. */
export async function readJson<T>(file: string): Promise<T> {
  return JSON.parse(await readFile(file, 'utf8')) as T;
}

/** Runs a program, its stdout and stderr going to one file (as `2>&1`); resolves with the exit code. */
async function runTo(logFile: string, cmd: string, args: string[], cwd?: string): Promise<number> {
  await mkdir(dirname(logFile), { recursive: true });
  const fd = openSync(logFile, 'w');
  try {
    return await new Promise<number>((res, rej) => {
      const child = spawn(cmd, args, { cwd, stdio: ['ignore', fd, fd], timeout: BUILD_TIMEOUT_MS });
      child.on('error', rej);
      child.on('close', (code, signal) => res(code ?? (signal ? 128 : 1)));
    });
  } finally {
    closeSync(fd);
  }
}

async function run(logFile: string, cmd: string, args: string[], cwd?: string): Promise<{ code: number; output: string }> {
  const code = await runTo(logFile, cmd, args, cwd);
  return { code, output: await readFile(logFile, 'utf8') };
}

/**
 * The base image's root filesystem, made once by scripts/make-busybox-rootfs.sh and kept in
 * the temp folder under a name keyed on the busybox binary it copies.
 */
export async function baseRootfsTar(): Promise<string> {
  const cached = async (): Promise<string | undefined> => {
    const st = await stat('/bin/busybox').catch(() => undefined);
    return st && join(tmpdir(), `slipway-busybox-rootfs-${st.size}-${Math.trunc(st.mtimeMs)}.tar`);
  };
  const known = await cached();
  if (known && existsSync(known)) return known;
  const tmp = join(tmpdir(), `slipway-busybox-rootfs.${process.pid}.tmp`);
  const script = join(PROJECT_ROOT, 'scripts', 'make-busybox-rootfs.sh');
  const r = await run(`${tmp}.log`, 'bash', [script, tmp]);
  if (r.code !== 0) throw new Error(`make-busybox-rootfs.sh failed (${r.code}):\n${r.output}`);
  await rm(`${tmp}.log`, { force: true });
  if (!r.output.includes(BASE_ROOTFS_SHA256)) {
    console.warn(`warning: base rootfs sha256 ${r.output.trim()} is not the corpus's ${BASE_ROOTFS_SHA256}; results may differ`);
  }
  // the script installs busybox-static when missing, so the key may only be known now
  const file = (await cached()) ?? join(tmpdir(), 'slipway-busybox-rootfs.tar');
  await rename(tmp, file); // atomic: a concurrent run sees the whole tar or none
  return file;
}

/** Options of one `slipway build`. */
export interface BuildOptions {
  tag: string;
  context: string;
  /** A name inside the context; `-f` is passed only when it is not `Dockerfile`. */
  dockerfile?: string;
  buildArgs?: Record<string, string>;
  target?: string | null;
  /** `--secret` and `--ssh` values, as the corpus runner passes them. */
  session?: string[];
}

/** The `--secret`/`--ssh` flags of a case's build.json, paths resolved in the case folder (as run.sh does). */
export function sessionArgs(spec: BuildSpecJson, caseDir: string): string[] {
  const out: string[] = [];
  for (const s of spec.secrets ?? []) out.push('--secret', `id=${s.id},src=${join(caseDir, s.src)}`);
  for (const s of spec.ssh ?? []) out.push('--ssh', `${s.id}=${join(caseDir, s.src)}`);
  return out;
}

/** Members of a saved image (a tar; gzip members opened) that hold a case's secret's content. */
export async function secretLeaks(spec: BuildSpecJson, caseDir: string, imageTar: string): Promise<string[]> {
  const values = await Promise.all((spec.secrets ?? []).map(async (s) => ({ id: s.id, v: (await readFile(join(caseDir, s.src))).toString('latin1').trim() })));
  if (values.every((x) => x.v === '')) return [];
  const { tarMembersHolding } = await import('./secret-search.js');
  const tar = await readFile(imageTar);
  const found: string[] = [];
  for (const { id, v } of values) if (v !== '') for (const m of await tarMembersHolding(tar, Buffer.from(v, 'latin1'))) found.push(`secret ${id}: its content is in ${m}`);
  return found;
}

/** The Slipway CLI bound to one store root; every call keeps its output (stdout and stderr) in a log file. */
export class SlipwayCli {
  constructor(readonly root: string) {}

  /** Runs `slipway --root ROOT ...args`, its output going to `log`. */
  async run(log: string, args: string[]): Promise<{ code: number; output: string }> {
    return run(log, process.execPath, [CLI_PATH, '--root', this.root, ...args]);
  }

  /** Imports the base rootfs as busybox:latest with `CMD ["sh"]`; throws on failure. */
  async importBase(tar: string, log: string): Promise<void> {
    const r = await this.run(log, ['import', '--change', 'CMD ["sh"]', tar, 'busybox:latest']);
    if (r.code !== 0) throw new Error(`slipway import failed (${r.code}):\n${r.output}`);
  }

  /** Runs one build the way the corpus's runner does (`plan`: `build --plan`, which runs nothing). */
  async build(log: string, o: BuildOptions, plan = false): Promise<{ code: number; output: string }> {
    const args = ['build', ...(plan ? ['--plan'] : []), '-t', o.tag];
    if (o.dockerfile && o.dockerfile !== 'Dockerfile') args.push('-f', join(o.context, o.dockerfile));
    for (const [k, v] of Object.entries(o.buildArgs ?? {})) args.push('--build-arg', `${k}=${v}`);
    if (o.target) args.push('--target', o.target);
    args.push(...(o.session ?? []));
    return this.run(log, [...args, o.context]);
  }

  /** `slipway save -o OUT TAG`; throws on failure. */
  async save(log: string, tag: string, out: string): Promise<void> {
    const r = await this.run(log, ['save', '-o', out, tag]);
    if (r.code !== 0) throw new Error(`slipway save ${tag} failed (${r.code}):\n${r.output}`);
  }
}

async function walk(dir: string, visit: (path: string, kind: 'dir' | 'file' | 'other', mode: number) => Promise<void>): Promise<void> {
  const st = await lstat(dir);
  await visit(dir, 'dir', st.mode);
  for (const name of await readdir(dir)) {
    const p = join(dir, name);
    const s = await lstat(p);
    if (s.isDirectory()) await walk(p, visit);
    else await visit(p, s.isFile() ? 'file' : 'other', s.mode);
  }
}

/**
 * A build context as the corpus defines it: the folder's context/ copied with symlinks kept,
 * folders 0755, files 0644 or 0755 when the owner may execute them (all that git keeps), the
 * Dockerfile at the root, everything owned by 0:0 when we are root, then make-context.sh.
 */
export async function prepareContext(src: string, dest: string, dockerfile = 'Dockerfile'): Promise<void> {
  await mkdir(dest, { recursive: true });
  if (existsSync(join(src, 'context'))) {
    await cp(join(src, 'context'), dest, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
  }
  await walk(dest, async (p, kind, mode) => {
    if (kind === 'dir') await chmod(p, 0o755);
    else if (kind === 'file') await chmod(p, mode & 0o100 ? 0o755 : 0o644);
  });
  await mkdir(dirname(join(dest, dockerfile)), { recursive: true });
  await copyFile(join(src, dockerfile), join(dest, dockerfile));
  await chmod(join(dest, dockerfile), 0o644);
  if (process.getuid?.() === 0) await walk(dest, async (p) => lchown(p, 0, 0));
  if (existsSync(join(src, 'make-context.sh'))) {
    const r = await run(`${dest}.make-context.out`, 'bash', [join(src, 'make-context.sh')], dest);
    if (r.code !== 0) throw new Error(`make-context.sh failed in ${src} (${r.code}):\n${r.output}`);
  }
}

/** Which steps of a legacy-format build output said ` ---> Using cache`, one boolean per `Step N/M :` line. */
export function cachedSteps(output: string): boolean[] {
  const steps: boolean[] = [];
  for (const line of output.replace(ANSI, '').split(/\r?\n/)) {
    if (/^Step \d+\/\d+ : /.test(line)) steps.push(false);
    else if (line.trim() === '---> Using cache' && steps.length > 0) steps[steps.length - 1] = true;
  }
  return steps;
}

/** What a failed build may have left behind: the `repositories` file and the graph/ entries. */
export async function storeState(root: string): Promise<{ repositories: string | null; graph: string[] }> {
  const repositories = await readFile(join(root, 'repositories'), 'utf8').catch(() => null);
  const graph = existsSync(join(root, 'graph')) ? (await readdir(join(root, 'graph'))).sort() : [];
  return { repositories, graph };
}

function tail(output: string, n = 12): string {
  return output.trimEnd().split('\n').slice(-n).map((l) => `    ${l}`).join('\n');
}

/**
 * Builds one case folder in `work` with `cli` (pre images first), then for a successful build
 * saves and normalizes the image and builds it again to see which steps came from the cache.
 */
export async function buildCase(caseDir: string, cli: SlipwayCli, work: string): Promise<CaseResult> {
  const spec = await readJson<BuildSpecJson>(join(caseDir, 'build.json'));
  for (const [i, pre] of (spec.pre ?? []).entries()) {
    const ctx = join(work, `pre${i}`);
    await prepareContext(join(caseDir, pre.dir), ctx);
    const r = await cli.build(join(work, `pre${i}.out`), { tag: pre.tag, context: ctx });
    if (r.code !== 0) throw new Error(`pre-build ${pre.tag} failed (${r.code}):\n${tail(r.output)}`);
  }
  const ctx = join(work, 'ctx');
  const dockerfile = spec.dockerfile ?? 'Dockerfile';
  await prepareContext(caseDir, ctx, dockerfile);
  const opts: BuildOptions = { tag: spec.tag, context: ctx, dockerfile, buildArgs: spec.buildArgs ?? {}, target: spec.target ?? null, session: sessionArgs(spec, caseDir) };
  const first = await cli.build(join(work, 'build.out'), opts);
  if (first.code !== 0) return { result: 'failure', exitCode: first.code, output: first.output };
  const image = join(work, 'image.tar');
  await cli.save(join(work, 'save.out'), spec.tag, image);
  const leaks = await secretLeaks(spec, caseDir, image);
  if (leaks.length > 0) throw new Error(`a secret is in the image:\n  ${leaks.join('\n  ')}`);
  const normalized = await normalizeImage(image, 1);
  const again = await cli.build(join(work, 'rebuild.out'), opts);
  const cachedOnRebuild = again.code === 0 ? cachedSteps(again.output) : null;
  return { result: 'success', exitCode: 0, ...normalized, cachedOnRebuild, output: first.output, rebuildOutput: again.output };
}

/**
 * Runs a cache sequence in its own store root: copies the context once, then per round runs
 * `mutate` there, builds with the round's build args and records the cached steps.
 */
/** Which steps `build --plan` predicted as cache hits, one boolean per `Step N/M` line. */
export function plannedHits(output: string): boolean[] {
  const steps: boolean[] = [];
  for (const line of output.replace(/\x1b\[[0-9;]*m/g, '').split('\n')) {
    if (/^Step \d+\/\d+ : /.test(line)) steps.push(false);
    else if (line.startsWith(' ---> Plan: hit') && steps.length) steps[steps.length - 1] = true;
  }
  return steps;
}

export async function runSequence(seqDir: string, cli: SlipwayCli, work: string, baseTar: string): Promise<{ exitCode: number; cached: boolean[]; planned: boolean[]; output: string }[]> {
  const name = basename(seqDir);
  const rounds = await readJson<RoundJson[]>(join(seqDir, 'sequence.json'));
  await cli.importBase(baseTar, join(work, 'import.out'));
  const ctx = join(work, 'ctx');
  await prepareContext(seqDir, ctx);
  const out: { exitCode: number; cached: boolean[]; planned: boolean[]; output: string }[] = [];
  for (const [i, round] of rounds.entries()) {
    if (round.mutate) {
      const m = await run(join(work, `mutate${i}.out`), 'bash', ['-c', round.mutate], ctx);
      if (m.code !== 0) throw new Error(`round ${i + 1}: mutate failed (${m.code}): ${round.mutate}\n${m.output}`);
    }
    const spec = { tag: `conf-cache/${name}:latest`, context: ctx, buildArgs: round.buildArgs ?? {} };
    // The prediction first (it runs and writes nothing), then the real build.
    const p = await cli.build(join(work, `plan${i + 1}.out`), spec, true);
    const r = await cli.build(join(work, `round${i + 1}.out`), spec);
    out.push({ exitCode: r.code, cached: cachedSteps(r.output), planned: p.code === 0 ? plannedHits(p.output) : [], output: r.output });
  }
  return out;
}

// ---- comparison: the corpus's rules, each difference as one line ----

const HISTORY_HASH = /(?<![A-Za-z])(file|dir|multi):[0-9a-f]{64}(?![\p{L}\p{N}_])/gu;

function show(v: unknown): string {
  const s = JSON.stringify(v === undefined ? null : v);
  return s.length <= 300 ? s : `${s.slice(0, 297)}...`;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** null, "", 0, [] and {} all mean "absent" in a config. */
function isAbsent(v: unknown): boolean {
  return v === null || v === undefined || v === '' || v === 0
    || (Array.isArray(v) && v.length === 0) || (isObject(v) && Object.keys(v).length === 0);
}

function configValue(v: unknown): unknown {
  if (!isObject(v)) return isAbsent(v) ? null : v;
  const kept = Object.entries(v).map(([k, x]) => [k, configValue(x)] as const).filter(([, x]) => !isAbsent(x));
  return kept.length > 0 ? Object.fromEntries(kept) : null;
}

function compareConfig(exp: Record<string, unknown>, act: Record<string, unknown>, diffs: string[]): void {
  const keys = [...Object.keys(exp), ...Object.keys(act).filter((k) => !(k in exp))];
  for (const k of keys) {
    if (!isDeepStrictEqual(configValue(exp[k]), configValue(act[k]))) {
      diffs.push(`config.${k}: expected ${show(exp[k])}, got ${show(act[k])}`);
    }
  }
}

/** Masks the legacy builder's content hashes (`COPY file:<64 hex> in /x`) unless STRICT_HISTORY=1. */
function maskHistory(s: string | null | undefined): string | null {
  if (s === null || s === undefined) return null;
  return process.env['STRICT_HISTORY'] === '1' ? s : s.replace(HISTORY_HASH, '$1:<HASH>');
}

function compareHistory(exp: NormalizedImageJson['history'], act: NormalizedImageJson['history'], diffs: string[], strings: boolean): void {
  if (exp.length !== act.length) diffs.push(`history: expected ${exp.length} entries, got ${act.length}`);
  for (let i = 0; i < Math.max(exp.length, act.length); i++) {
    const e = exp[i];
    const a = act[i];
    if (!e || !a) { diffs.push(`history[${i}]: ${e ? `missing ${show(e)}` : `unexpected ${show(a)}`}`); continue; }
    if (strings && maskHistory(e.created_by) !== maskHistory(a.created_by)) {
      diffs.push(`history[${i}].created_by: expected ${show(e.created_by)}, got ${show(a.created_by)}`);
    }
    if (Boolean(e.empty_layer) !== Boolean(a.empty_layer)) {
      diffs.push(`history[${i}].empty_layer: expected ${Boolean(e.empty_layer)}, got ${Boolean(a.empty_layer)}`);
    }
  }
}

/** Entries matched by path; every field but `text` must agree. */
function compareEntries(where: string, exp: EntryJson[], act: EntryJson[], diffs: string[], dropImplied: boolean): void {
  const index = (list: EntryJson[]): Map<string, EntryJson> =>
    new Map(list.filter((e) => !(dropImplied && e.implied)).map((e) => [e.path, e]));
  const ei = index(exp);
  const ai = index(act);
  for (const p of [...new Set([...ei.keys(), ...ai.keys()])].sort()) {
    const e = ei.get(p);
    const a = ai.get(p);
    if (!e || !a) { diffs.push(`${where}: ${e ? `missing ${show(e)}` : `unexpected ${show(a)}`}`); continue; }
    const bad = ENTRY_ATTRS.filter((f) => (e[f] ?? null) !== (a[f] ?? null)).map((f) => `${f} expected ${show(e[f])} got ${show(a[f])}`);
    if (bad.length > 0 && e.sha256 !== a.sha256 && (e.text !== undefined || a.text !== undefined)) {
      bad.push(`text expected ${show(e.text)} got ${show(a.text)}`); // for reading only
    }
    if (bad.length > 0) diffs.push(`${where} ${p}: ${bad.join('; ')}`);
  }
}

/** Differences between a case's expected.json and what the build produced (empty when they match). */
export function compareCase(exp: ExpectedJson, act: CaseResult): string[] {
  const diffs: string[] = [];
  if (exp.result === 'failure') {
    if (act.result !== 'failure' || act.exitCode === 0) return ['result: expected the build to fail, but it succeeded'];
    if (exp.contains && !act.output.replace(ANSI, '').includes(exp.contains)) {
      diffs.push(`output: does not contain ${show(exp.contains)} (Docker printed ${show(exp.message)})`);
    }
    // a failing RUN passes the command's status through, as `docker build` does
    if (/returned a non-zero code: \d+/.test(exp.message) && act.exitCode !== exp.exitCode) {
      diffs.push(`exitCode: expected ${exp.exitCode}, got ${act.exitCode}`);
    }
    return diffs;
  }
  if (act.result !== 'success') {
    return [`result: expected success, got failure (exit code ${act.exitCode})`, `output (last lines):\n${tail(act.output)}`];
  }
  compareConfig(exp.config ?? {}, act.config, diffs);
  // Slipway writes legacy history strings for every build: BuildKit's are compared by count and empty_layer only
  compareHistory(exp.history ?? [], act.history, diffs, exp.builder !== 'buildkit');
  const [el, al] = [exp.layers ?? [], act.layers];
  if (el.length !== al.length) diffs.push(`layers: expected ${el.length} layers, got ${al.length}`);
  for (let i = 0; i < Math.min(el.length, al.length); i++) compareEntries(`layers[${i}]`, el[i]!, al[i]!, diffs, true);
  compareEntries('fs.added', exp.fs?.added ?? [], act.fs.added, diffs, false);
  compareEntries('fs.modified', exp.fs?.modified ?? [], act.fs.modified, diffs, false);
  const [er, ar] = [new Set(exp.fs?.removed ?? []), new Set(act.fs.removed)];
  for (const p of [...er].filter((x) => !ar.has(x)).sort()) diffs.push(`fs.removed: missing ${show(p)}`);
  for (const p of [...ar].filter((x) => !er.has(x)).sort()) diffs.push(`fs.removed: unexpected ${show(p)}`);
  if (exp.cachedOnRebuild !== null && exp.cachedOnRebuild !== undefined && !isDeepStrictEqual(exp.cachedOnRebuild, act.cachedOnRebuild)) {
    diffs.push(`cachedOnRebuild: expected ${show(exp.cachedOnRebuild)}, got ${show(act.cachedOnRebuild)}`);
    if (act.cachedOnRebuild === null) diffs.push(`rebuild failed; its output (last lines):\n${tail(act.rebuildOutput)}`);
  }
  return diffs;
}

/** Differences between a sequence's rounds and what the builds did: every round builds, `cached` lists equal. */
export function compareRounds(exp: RoundJson[], act: { exitCode: number; cached: boolean[]; output: string }[]): string[] {
  const diffs: string[] = [];
  if (exp.length !== act.length) diffs.push(`rounds: expected ${exp.length} rounds, got ${act.length}`);
  for (let i = 0; i < Math.min(exp.length, act.length); i++) {
    const [e, a] = [exp[i]!, act[i]!];
    const where = `round ${i + 1} (${e.mutate || 'no change'}${e.buildArgs && Object.keys(e.buildArgs).length ? ` ${show(e.buildArgs)}` : ''})`;
    if (a.exitCode !== 0) diffs.push(`${where}: build failed with exit code ${a.exitCode}\n${tail(a.output)}`);
    else if (!isDeepStrictEqual(e.cached, a.cached)) diffs.push(`${where}: cached expected ${show(e.cached)}, got ${show(a.cached)}`);
  }
  return diffs;
}
