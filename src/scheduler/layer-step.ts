import type { NetworkMode } from '../sandbox/oci-spec.js';
import fs from 'node:fs/promises';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { SlipwayError, dockerfileError } from '../errors.js';
import { cloneConfig, containerEnv, type ContainerConfigJson } from '../image-config.js';
import { expandAt } from '../dockerfile/plan.js';
import { specialFileError, specialKind } from '../context/special-file.js';
import { lookupIn, predefinedRunArgs, runBuildArgs, shellOf, type StageState } from '../dockerfile/metadata.js';
import type { CopyStep, RunStep, WorkdirStep } from '../dockerfile/step.js';
import { mkdirInUpper, resolveChown, resolveUser } from '../snapshot/rootfs.js';
import { LayerView } from '../snapshot/layer-view.js';
import { EMPTY_LAYER_DIFF_ID } from '../store/layout.js';
import { makeTmpDir } from '../store/graph.js';
import { resolveInRoot } from '../snapshot/resolve-in-root.js';
import type { CopyOp } from '../snapshot/copy-in-root.js';
import type { StepResult } from '../snapshot/run-step.js';
import { digestSources, NeedsHashing, type SourceSpec, type SourcesDigest, type StatCache } from '../cache/context-digest.js';
import { expandSourcePattern, hasWildcard } from '../context/glob.js';
import { resolveImage } from '../store/graph.js';
import type { ImageId } from '../store/layout.js';
import type { BuildRun } from './build.js';
import { verifyChecksum } from './add-checksum.js';
import { copySelection, type CopySelection } from './copy-select.js';

/** A prepared RUN/COPY/ADD/WORKDIR: its history Cmd, its key inputs and how to execute it. */
export interface LayerWork {
  /** Config after the step. */
  config: ContainerConfigJson;
  /** Config the step runs with (container_config without Cmd), when it differs from `config`. */
  runConfig?: ContainerConfigJson;
  cmd: string[];
  keyExtra: unknown;
  displayCmd: string;
  /** The container id a RUN runs as (its first 12 hex are the step's hostname, as in Docker). */
  container?: string;
  execute: (onOutput: (text: string) => void) => Promise<StepResult>;
}

/** Prepares a file-changing step; all expansion and source selection happens here, in the main thread. */
export async function prepareLayerStep(run: BuildRun, state: StageState, step: RunStep | CopyStep | WorkdirStep, lowerDirs: string[]): Promise<LayerWork> {
  switch (step.kind) {
    case 'RUN': return prepareRun(run, state, step, lowerDirs);
    case 'WORKDIR': return prepareWorkdir(run, state, step, lowerDirs);
    case 'COPY':
    case 'ADD': return prepareCopy(run, state, step, lowerDirs);
  }
}

function runArgv(step: RunStep, config: ContainerConfigJson): string[] {
  if (step.form === 'exec') return step.exec;
  const shell = shellOf(config);
  if (step.heredocs.length > 0) {
    // `RUN <<EOF` alone runs the heredoc as the script; otherwise the shell sees the heredocs.
    if (/^<<-?["']?[A-Za-z0-9_.-]+["']?$/.test(step.shell.trim()) && step.heredocs.length === 1) {
      return [...shell, step.heredocs[0]!.content];
    }
    const bodies = step.heredocs.map((h) => `${h.content}${h.name}\n`).join('');
    return [...shell, `${step.shell}\n${bodies}`];
  }
  return [...shell, step.shell];
}

/**
 * The network a RUN gets: its own `--network=`, else the build's. The host's network is an
 * entitlement (`--allow network.host` on serve and worker; a local build as root may ask).
 */
function runNetwork(run: BuildRun, step: RunStep): NetworkMode {
  const asked = step.network ?? run.opts.network ?? 'default';
  if (asked !== 'host' && asked !== 'none' && asked !== 'default') {
    throw dockerfileError('ERR_DOCKERFILE_SYNTAX', run.plan.file, step.line, `unsupported network mode: ${asked} (default, none or host)`);
  }
  if (asked === 'host' && !run.opts.allowHostNetwork) {
    const how = step.network === 'host' ? 'RUN --network=host' : '--network host';
    throw dockerfileError('ERR_DOCKERFILE_SYNTAX', run.plan.file, step.line, `${how} is not allowed: the host network needs the network.host entitlement (--allow network.host)`);
  }
  return asked;
}

async function prepareRun(run: BuildRun, state: StageState, step: RunStep, lowerDirs: string[]): Promise<LayerWork> {
  const config = cloneConfig(state.config);
  const argv = runArgv(step, config);
  const args = runBuildArgs(state);
  const cmd = args.length > 0 ? [`|${args.length}`, ...args, ...argv] : argv;
  const mode = runNetwork(run, step);
  let ident;
  try {
    ident = await resolveUser(lowerDirs, config.User);
  } catch (e) {
    if (e instanceof SlipwayError) throw dockerfileError(e.code, run.plan.file, step.line, e.message);
    throw e;
  }
  // Docker's legacy builder names the container's hostname after its id, and every RUN (one
  // from an ONBUILD trigger too) gets the daemon's default PATH, HOSTNAME and HOME.
  const container = crypto.randomBytes(32).toString('hex');
  const hostname = container.slice(0, 12);
  const env = containerEnv([...(config.Env ?? []), ...args, ...predefinedRunArgs(state)], { hostname, home: ident.home });
  return {
    config,
    cmd,
    keyExtra: { network: mode },
    displayCmd: argv.join(' '),
    container,
    execute: (onOutput) => run.opts.pool.runStep({
      type: 'run', tmpRoot: run.opts.layout.tmp, lowerDirs, argv, env, uid: ident.uid, gid: ident.gid, groups: ident.groups,
      cwd: config.WorkingDir || '/', network: mode, volumes: Object.keys(config.Volumes ?? {}), hostname,
      driver: run.opts.storageDriver ?? 'overlay', ...(run.opts.sandbox ? { sandbox: run.opts.sandbox } : {}),
      ...(run.opts.sourceDateEpoch !== undefined ? { clampMtime: run.opts.sourceDateEpoch } : {}),
    }, onOutput, run.opts.signal),
  };
}

async function prepareWorkdir(run: BuildRun, state: StageState, step: WorkdirStep, lowerDirs: string[]): Promise<LayerWork> {
  const p = expandAt(run.plan.file, step.line, step.path, lookupIn(state), run.escape);
  const dir = path.posix.resolve(state.config.WorkingDir || '/', p);
  const config = { ...cloneConfig(state.config), WorkingDir: dir };
  const op: CopyOp = { kind: 'MKDIR', sources: [], dest: dir, uid: 0, gid: 0, chownGiven: false, chmod: undefined, keepSpecialBits: false };
  return {
    config,
    cmd: [...shellOf(config), `#(nop) WORKDIR ${dir}`],
    keyExtra: null,
    displayCmd: `WORKDIR ${dir}`,
    execute: async () => (await workdirWithoutSandbox(run, lowerDirs, dir)) ?? run.opts.pool.runStep({ type: 'copy', tmpRoot: run.opts.layout.tmp, lowerDirs, op, driver: run.opts.storageDriver ?? 'overlay', ...(run.opts.sourceDateEpoch !== undefined ? { clampMtime: run.opts.sourceDateEpoch } : {}) }),
  };
}

/**
 * WORKDIR only creates folders: done directly in a fresh upper folder (no mount, no sandbox)
 * unless a component is a symlink or file in the image. Undefined means: use the sandbox.
 */
async function workdirWithoutSandbox(run: BuildRun, lowerDirs: string[], dir: string): Promise<StepResult | undefined> {
  if (run.opts.storageDriver === 'vfs') return undefined;
  const tmp = await makeTmpDir(run.opts.layout, 'workdir');
  const upper = path.join(tmp, 'layer');
  await fs.mkdir(upper, { mode: 0o755 });
  try {
    if (!(await mkdirInUpper(lowerDirs, upper, dir))) {
      await fs.rm(tmp, { recursive: true, force: true });
      return undefined;
    }
    if (run.opts.sourceDateEpoch !== undefined) {
      const t = new Date(run.opts.sourceDateEpoch * 1000);
      const clamp = async (d: string): Promise<void> => {
        for (const n of await fs.readdir(d)) await clamp(path.join(d, n));
        if (d !== upper) await fs.utimes(d, t, t);
      };
      await clamp(upper);
    }
    const empty = (await fs.readdir(upper)).length === 0;
    if (empty) return { ok: true, layerDir: upper, diffId: EMPTY_LAYER_DIFF_ID, size: 0, tarSize: 1024, empty };
    const { packLayer, layerSize } = await import('../snapshot/pack.js');
    const { diffId, size: tarSize } = await packLayer(upper, null);
    return { ok: true, layerDir: upper, diffId, size: await layerSize(upper), tarSize, empty };
  } catch (e) {
    await fs.rm(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** Where `COPY --from` reads: an earlier stage (by name or index) or an image. */
async function fromLowerDirs(run: BuildRun, from: string, line: number): Promise<{ lowerDirs: string[]; id: string }> {
  const { lowerDirsOf } = await import('./build.js');
  // Only earlier stages count (a later one or this one would be a cycle); other names are images.
  const earlier = run.plan.stages.filter((s) => s.index < (run.currentStage ?? run.plan.stages.length));
  const byIndex = /^\d+$/.test(from) ? earlier[Number(from)] : undefined;
  const byName = earlier.find((s) => s.name === from.toLowerCase());
  const stage = byIndex ?? byName;
  let id: string | null;
  if (stage) {
    const pending = run.stages.get(stage.index);
    const res = pending ? await pending : undefined;
    if (!res) throw dockerfileError('ERR_UNKNOWN_STAGE', run.plan.file, line, `invalid from flag value ${from}: stage not built yet`);
    id = res.id;
  } else {
    try {
      id = await resolveImage(run.opts.layout, from);
    } catch {
      throw dockerfileError('ERR_UNKNOWN_STAGE', run.plan.file, line, `invalid from flag value ${from}: no stage or image of that name`);
    }
  }
  return { lowerDirs: id ? await lowerDirsOf(run.opts.layout, id as ImageId) : [], id: id ?? 'scratch' };
}

function parseChmod(s: string | undefined, file: string, line: number): number | undefined {
  if (s === undefined) return undefined;
  if (!/^[0-7]{3,4}$/.test(s)) throw dockerfileError('ERR_DOCKERFILE_SYNTAX', file, line, `invalid chmod parameter: ${s}`);
  return Number.parseInt(s, 8);
}

async function prepareCopy(run: BuildRun, state: StageState, step: CopyStep, lowerDirs: string[]): Promise<LayerWork> {
  const { file } = run.plan;
  const lookup = lookupIn(state);
  const ex = (w: string) => expandAt(file, step.line, w, lookup, run.escape);
  const config = cloneConfig(state.config);
  const chownSpec = step.chown !== undefined ? ex(step.chown) : undefined;
  let owner = { uid: 0, gid: 0 };
  if (chownSpec !== undefined && chownSpec !== '') {
    try {
      owner = await resolveChown(lowerDirs, chownSpec);
    } catch (e) {
      if (e instanceof SlipwayError) throw new SlipwayError(e.code, `${file}:${step.line}: ${e.message}`, { line: step.line });
      throw e;
    }
  }
  const chmod = parseChmod(step.chmod, file, step.line);
  let dest = ex(step.dest);
  const trailing = dest.endsWith('/') || dest === '.' || dest.endsWith('/.');
  if (!path.posix.isAbsolute(dest)) dest = path.posix.join(config.WorkingDir || '/', dest);
  dest = path.posix.normalize(dest);
  if (trailing && !dest.endsWith('/')) dest += '/';
  const rawSources = step.sources.map(ex);
  const sel = copySelection(step, { exclude: (step.exclude ?? []).map(ex), sources: rawSources, checksum: step.checksum !== undefined ? ex(step.checksum) : undefined }, file);
  const shownDest = ex(step.dest);
  const chownText = chownSpec !== undefined ? `--chown=${chownSpec}` : '';
  const baseOp = { kind: step.kind, dest, uid: owner.uid, gid: owner.gid, chownGiven: chownSpec !== undefined && chownSpec !== '', chmod, keepSpecialBits: false } as const;

  let heredocDir: string | undefined;
  if (step.heredocs.length > 0) {
    // Each `<<NAME` source becomes a file NAME with the heredoc's content (expanded unless quoted).
    heredocDir = await makeTmpDir(run.opts.layout, 'heredoc');
    for (let i = 0; i < rawSources.length; i++) {
      const m = /^<<-?["']?([A-Za-z0-9_.-]+)["']?$/.exec(rawSources[i]!);
      const doc = m ? step.heredocs.find((h) => h.name === m[1]) : undefined;
      if (!doc) continue;
      const content = doc.quoted ? doc.content : expandVariablesOnly(doc.content, lookup);
      await fs.writeFile(path.join(heredocDir, doc.name), content, { mode: 0o644 });
      await fs.chmod(path.join(heredocDir, doc.name), 0o644);
      rawSources[i] = doc.name;
    }
  }
  const sourceRoot = heredocDir ?? run.context.dir;
  if (step.from !== undefined) {
    const from = await fromLowerDirs(run, ex(step.from), step.line);
    // Docker names one copied source `file:`/`dir:` and several, however selected, `multi:`.
    const view = new LayerView(from.lowerDirs);
    const matches = rawSources.flatMap((p) => view.glob(p));
    if (Math.max(matches.length, rawSources.length) > 1 && !dest.endsWith('/')) throw multiError(step);
    const op: CopyOp = { ...baseOp, sources: [], from: { lowerDirs: from.lowerDirs, scratch: '', paths: rawSources } };
    const summary = crypto.createHash('sha256').update(JSON.stringify({ from: from.id, rawSources })).digest('hex');
    const only = matches.length === 1 ? view.lstat(view.resolve(matches[0]!)) : undefined;
    const kind = matches.length > 1 ? 'multi' : only?.isDirectory() ? 'dir' : 'file';
    return {
      config,
      cmd: [...shellOf(config), `#(nop) ${step.kind} ${chownText}${kind}:${summary} in ${shownDest} `],
      keyExtra: { from: from.id, paths: rawSources, chmod },
      displayCmd: step.text,
      execute: () => run.opts.pool.runStep({ type: 'copy', tmpRoot: run.opts.layout.tmp, lowerDirs, op, driver: run.opts.storageDriver ?? 'overlay', ...(run.opts.sourceDateEpoch !== undefined ? { clampMtime: run.opts.sourceDateEpoch } : {}) }),
    };
  }

  const sources: SourceSpec[] = [];
  let downloads: string | undefined;
  for (const raw of rawSources) {
    if (/^https?:\/\//.test(raw)) {
      if (step.kind === 'COPY') throw new SlipwayError('ERR_FILE_NOT_FOUND', `${file}:${step.line}: COPY failed: source can't be a URL for COPY`, { line: step.line });
      downloads ??= await makeTmpDir(run.opts.layout, 'add-url');
      sources.push(await downloadSource(raw, downloads, file, step.line));
      if (step.checksum !== undefined) await verifyChecksum(sources[sources.length - 1]!.abs, ex(step.checksum), raw, file, step.line);
      continue;
    }
    const { clean, pivot } = sel.split(raw);
    if (clean === '..' || clean.startsWith('../')) {
      throw new SlipwayError('ERR_CONTEXT_PATH', `${file}:${step.line}: ${step.kind} failed: forbidden path outside the build context: ${raw} ()`, { line: step.line });
    }
    const ignored = heredocDir ? () => false : run.context.isIgnored;
    const rels = hasWildcard(clean) ? await expandSourcePattern(sourceRoot, clean, ignored) : [clean];
    if (rels.length === 0) throw new SlipwayError('ERR_FILE_NOT_FOUND', `${file}:${step.line}: ${step.kind} failed: no source files were specified`, { line: step.line });
    for (const rel of hasWildcard(clean) ? sel.filterMatches(rels) : rels) {
      const abs = await resolveInRoot(sourceRoot, rel);
      const exists = await fs.stat(abs).catch(() => undefined);
      if (!exists || (rel !== '.' && ignored(rel))) {
        throw new SlipwayError('ERR_FILE_NOT_FOUND', `${file}:${step.line}: ${step.kind} failed: file not found in build context or excluded by .dockerignore: stat ${rel}: file does not exist`, { line: step.line });
      }
      const special = specialKind(exists);
      if (special) throw dockerfileError('ERR_CONTEXT_PATH', file, step.line, `${step.kind} failed: ${specialFileError(rel, special).message}`);
      const own = sel.destOf(dest, rel, pivot);
      sources.push({ rel, abs, ...(own !== undefined ? { dest: own } : {}) });
    }
  }
  if (sources.length > 1 && !dest.endsWith('/')) throw multiError(step);
  const digest = await digestInPlaceOrPool(run, sources, sel);
  const op: CopyOp = {
    ...baseOp,
    downloaded: sources.filter((s) => s.url !== undefined).map((s) => s.abs),
    sources: sources.map((s, i) => ({ abs: s.abs, rel: s.rel, ...(s.dest !== undefined ? { dest: s.dest } : {}), entries: digest.entries[i]!.map((e) => ({ path: e.path, type: e.type, ...(e.implied ? { implied: true } : {}) })) })),
  };
  return {
    config,
    cmd: [...shellOf(config), `#(nop) ${step.kind} ${chownText}${digest.legacyHash} in ${shownDest} `],
    keyExtra: { entries: digest.entries, sources: sources.map((x) => x.rel), chmod, dest, ...sel.keyExtra },
    displayCmd: step.text,
    execute: async () => {
      try {
        return await run.opts.pool.runStep({ type: 'copy', tmpRoot: run.opts.layout.tmp, lowerDirs, op, driver: run.opts.storageDriver ?? 'overlay', ...(run.opts.sourceDateEpoch !== undefined ? { clampMtime: run.opts.sourceDateEpoch } : {}) });
      } finally {
        if (heredocDir) await fs.rm(heredocDir, { recursive: true, force: true });
        if (downloads) await fs.rm(downloads, { recursive: true, force: true });
      }
    },
  };
}

/** Heredoc bodies of COPY expand `$NAME` and `${NAME...}` but keep quotes and backslashes as written. */
function expandVariablesOnly(text: string, lookup: (n: string) => string | undefined): string {
  return text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?([-+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (_m, n1: string | undefined, op: string | undefined, word: string | undefined, n2: string | undefined) => {
    const v = lookup((n1 ?? n2)!);
    if (op === '-') return v === undefined || v === '' ? (word ?? '') : v;
    if (op === '+') return v === undefined || v === '' ? '' : (word ?? '');
    return v ?? '';
  });
}

/**
 * ADD <url>: downloads into the build's scratch space (Docker does this on every build: the
 * content decides the cache hit). The file is named after the URL's last path component, gets
 * mode 0600 and the server's Last-Modified time, and is never unpacked.
 */
async function downloadSource(url: string, dir: string, file: string, line: number): Promise<SourceSpec> {
  let res: Response;
  try {
    res = await fetch(url, { redirect: 'follow', signal: AbortSignal.timeout(10 * 60_000) });
  } catch (e) {
    throw new SlipwayError('ERR_FILE_NOT_FOUND', `${file}:${line}: ADD failed: error downloading ${url}: ${(e as Error).message}`, { line });
  }
  if (!res.ok || !res.body) {
    throw new SlipwayError('ERR_FILE_NOT_FOUND', `${file}:${line}: ADD failed: error downloading ${url}: ${res.status} ${res.statusText}`, { line });
  }
  const name = decodeURIComponent(new URL(url).pathname.split('/').filter(Boolean).pop() ?? '') || '__unnamed__';
  if (name === '..' || name === '.' || name.includes('/')) throw new SlipwayError('ERR_CONTEXT_PATH', `${file}:${line}: ADD failed: invalid file name in ${url}`, { line });
  const sub = path.join(dir, String(Math.random()).slice(2));
  await fs.mkdir(sub);
  const abs = path.join(sub, name);
  const { Readable } = await import('node:stream');
  const { pipeline } = await import('node:stream/promises');
  const { createWriteStream } = await import('node:fs');
  await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream), createWriteStream(abs, { mode: 0o600 }));
  await fs.chmod(abs, 0o600);
  const lm = res.headers.get('last-modified');
  if (lm && !Number.isNaN(Date.parse(lm))) await fs.utimes(abs, new Date(), new Date(Date.parse(lm)));
  return { rel: name, abs, url };
}

function multiError(step: CopyStep): SlipwayError {
  return new SlipwayError('ERR_COPY_DEST', `When using ${step.kind} with more than one source file, the destination must be a directory and end with a /`, { line: step.line });
}

/**
 * Digests COPY/ADD sources. When the stat cache vouches for every file (a warm build), the
 * walk in this thread is all there is; otherwise file contents are hashed in the pool.
 */
async function digestInPlaceOrPool(run: BuildRun, sources: SourceSpec[], sel: CopySelection): Promise<SourcesDigest> {
  const { ignored, implied } = await ignoredList(run, sources, sel);
  const ignoredSet = new Set(ignored);
  const impliedSet = new Set(implied);
  const isImplied = (rel: string): boolean => impliedSet.has(rel);
  try {
    return await digestSources(sources, (rel) => ignoredSet.has(rel), run.context.statCache, { cachedOnly: true, isImplied });
  } catch (e) {
    if (!(e instanceof NeedsHashing)) throw e;
  }
  const digest = await run.opts.pool.digest<SourcesDigest & { statCache: StatCache }>({ sources, ignored, implied, statCache: run.context.statCache });
  Object.assign(run.context.statCache, digest.statCache);
  return digest;
}

/**
 * Context-relative paths under the selected folders that the build does not see (a folder
 * left out hides all below it), and the excluded folders it sees only through an exception.
 */
async function ignoredList(run: BuildRun, sources: SourceSpec[], sel: CopySelection): Promise<{ ignored: string[]; implied: string[] }> {
  const out: string[] = [];
  const implied: string[] = [];
  const walk = (abs: string, rel: string, inSrc = ''): void => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = readdirSync(abs, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const r = rel === '.' ? e.name : `${rel}/${e.name}`;
      const below = inSrc === '' ? e.name : `${inSrc}/${e.name}`;
      if (run.context.isIgnored(r) || (sel.excluded(below) && !(e.isDirectory() && sel.reopens(below)))) {
        out.push(r);
        continue;
      }
      if (!e.isDirectory()) continue;
      if (run.context.isImplied(r)) implied.push(r);
      walk(path.join(abs, e.name), r, below);
    }
  };
  for (const s of sources) {
    if (!(await fs.stat(s.abs)).isDirectory()) continue;
    if (s.url === undefined && s.rel !== '.' && run.context.isImplied(s.rel)) implied.push(s.rel);
    walk(s.abs, s.rel);
  }
  return { ignored: out, implied };
}
