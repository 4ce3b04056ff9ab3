import fs from 'node:fs/promises';
import path from 'node:path';
import crypto from 'node:crypto';
import { SlipwayError, dockerfileError } from '../errors.js';
import { cloneConfig, type ContainerConfigJson } from '../image-config.js';
import { expandAt } from '../dockerfile/plan.js';
import { specialFileError, specialKind } from '../context/special-file.js';
import { lookupIn, shellOf, type StageState } from '../dockerfile/metadata.js';
import type { CopyStep } from '../dockerfile/step.js';
import { resolveChown } from '../snapshot/rootfs.js';
import { LayerView } from '../snapshot/layer-view.js';
import { lowerDirsOf, makeTmpDir, resolveImage } from '../store/graph.js';
import { resolveInRoot } from '../snapshot/resolve-in-root.js';
import type { CopyOp } from '../snapshot/copy-in-root.js';
import type { SourceSpec } from '../cache/context-digest.js';
import { expandSourcePattern, hasWildcard } from '../context/glob.js';
import type { ImageId } from '../store/layout.js';
import type { BuildRun } from './run-types.js';
import { finishOptions, type LayerWork } from './layer-work.js';
import { digestInPlaceOrPool, downloadSource, expandVariablesOnly } from './copy-sources.js';
import { verifyChecksum } from './add-checksum.js';
import { copySelection, type CopySelection } from './copy-select.js';
import { unchangedFiles } from './previous-copy.js';

/** Where `COPY --from` reads: an earlier stage (by name or index) or an image. */
export async function fromLowerDirs(run: BuildRun, from: string, line: number): Promise<{ lowerDirs: string[]; id: string }> {
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

/** What every COPY/ADD resolves before its sources: expansion, owner, mode, destination. */
interface CopyBasics {
  ex: (w: string) => string;
  lookup: (n: string) => string | undefined;
  config: ContainerConfigJson;
  baseOp: Omit<CopyOp, 'sources'>;
  rawSources: string[];
  /** The history's `#(nop) COPY --chown=… <summary> in <dest> ` around a source summary. */
  history: (summary: string) => string[];
}

async function copyBasics(run: BuildRun, state: StageState, step: CopyStep, lowerDirs: string[]): Promise<CopyBasics> {
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
      if (e instanceof SlipwayError) throw dockerfileError(e.code, file, step.line, e.message);
      throw e;
    }
  }
  const chmod = parseChmod(step.chmod, file, step.line);
  let dest = ex(step.dest);
  const trailing = dest.endsWith('/') || dest === '.' || dest.endsWith('/.');
  if (!path.posix.isAbsolute(dest)) dest = path.posix.join(config.WorkingDir || '/', dest);
  dest = path.posix.normalize(dest);
  if (trailing && !dest.endsWith('/')) dest += '/';
  const shownDest = ex(step.dest);
  const chownText = chownSpec !== undefined ? `--chown=${chownSpec}` : '';
  return {
    ex, lookup, config, rawSources: step.sources.map(ex),
    baseOp: { kind: step.kind, dest, uid: owner.uid, gid: owner.gid, chownGiven: chownSpec !== undefined && chownSpec !== '', chmod, keepSpecialBits: false },
    history: (summary) => [...shellOf(config), `#(nop) ${step.kind} ${chownText}${summary} in ${shownDest} `],
  };
}

/** Each `<<NAME` source becomes a file NAME with the heredoc's content (expanded unless quoted); returns their folder. */
async function heredocSources(run: BuildRun, step: CopyStep, b: CopyBasics): Promise<string | undefined> {
  if (step.heredocs.length === 0) return undefined;
  const dir = await makeTmpDir(run.opts.layout, 'heredoc');
  for (let i = 0; i < b.rawSources.length; i++) {
    const m = /^<<-?["']?([A-Za-z0-9_.-]+)["']?$/.exec(b.rawSources[i]!);
    const doc = m ? step.heredocs.find((h) => h.name === m[1]) : undefined;
    if (!doc) continue;
    const content = doc.quoted ? doc.content : expandVariablesOnly(doc.content, b.lookup);
    await fs.writeFile(path.join(dir, doc.name), content, { mode: 0o644 });
    await fs.chmod(path.join(dir, doc.name), 0o644);
    b.rawSources[i] = doc.name;
  }
  return dir;
}

export async function prepareCopy(run: BuildRun, state: StageState, step: CopyStep, lowerDirs: string[]): Promise<LayerWork> {
  const b = await copyBasics(run, state, step, lowerDirs);
  if (step.from !== undefined) return copyFromStage(run, step, lowerDirs, b);
  const sel = copySelection(step, { exclude: (step.exclude ?? []).map(b.ex), sources: b.rawSources, checksum: step.checksum !== undefined ? b.ex(step.checksum) : undefined }, run.plan.file);
  const heredocDir = await heredocSources(run, step, b);
  const downloads: { dir?: string } = {};
  const cleanup = async (): Promise<void> => {
    if (heredocDir) await fs.rm(heredocDir, { recursive: true, force: true });
    if (downloads.dir) await fs.rm(downloads.dir, { recursive: true, force: true });
  };
  const sources = await contextSources(run, step, { raw: b.rawSources, sel, ex: b.ex, dest: b.baseOp.dest }, heredocDir, downloads).catch(async (e: unknown) => { await cleanup(); throw e; });
  if (sources.length > 1 && !b.baseOp.dest.endsWith('/')) throw multiError(step);
  const digest = await digestInPlaceOrPool(run, sources, sel);
  const op: CopyOp = {
    ...b.baseOp,
    downloaded: sources.filter((s) => s.url !== undefined).map((s) => s.abs),
    sources: sources.map((s, i) => ({ abs: s.abs, rel: s.rel, ...(s.dest !== undefined ? { dest: s.dest } : {}), entries: digest.entries[i]!.map((e) => ({ path: e.path, type: e.type, ...(e.implied ? { implied: true } : {}) })) })),
  };
  return {
    config: b.config,
    cmd: b.history(digest.legacyHash),
    keyExtra: { entries: digest.entries, sources: sources.map((x) => x.rel), chmod: b.baseOp.chmod, dest: b.baseOp.dest, ...sel.keyExtra },
    displayCmd: step.text,
    execute: async (_onOutput, previous) => {
      // Linked files share their inode with the earlier layer: nothing may change them in place
      // afterwards (SOURCE_DATE_EPOCH clamps mtimes on disk), and only a plain COPY's files are plain copies.
      const linking = previous && step.kind === 'COPY' && run.opts.sourceDateEpoch === undefined;
      const link = linking ? { layerDir: previous.layerDir, files: unchangedFiles(previous, op.sources, digest.entries) } : undefined;
      try {
        return await run.opts.executor.runStep({ type: 'copy', tmpRoot: run.opts.layout.tmp, lowerDirs, op: link && link.files.length > 0 ? { ...op, link } : op, driver: run.opts.storageDriver ?? 'overlay', ...finishOptions(run) });
      } finally {
        await cleanup();
      }
    },
  };
}

/** `COPY --from`: Docker names one copied source `file:`/`dir:` and several, however selected, `multi:`. */
async function copyFromStage(run: BuildRun, step: CopyStep, lowerDirs: string[], b: CopyBasics): Promise<LayerWork> {
  const from = await fromLowerDirs(run, b.ex(step.from!), step.line);
  const view = new LayerView(from.lowerDirs);
  const matches = b.rawSources.flatMap((p) => view.glob(p));
  if (Math.max(matches.length, b.rawSources.length) > 1 && !b.baseOp.dest.endsWith('/')) throw multiError(step);
  const op: CopyOp = { ...b.baseOp, sources: [], from: { lowerDirs: from.lowerDirs, paths: b.rawSources } };
  const summary = crypto.createHash('sha256').update(JSON.stringify({ from: from.id, rawSources: b.rawSources })).digest('hex');
  const only = matches.length === 1 ? view.lstat(view.resolve(matches[0]!)) : undefined;
  const kind = matches.length > 1 ? 'multi' : only?.isDirectory() ? 'dir' : 'file';
  return {
    config: b.config,
    cmd: b.history(`${kind}:${summary}`),
    keyExtra: { from: from.id, paths: b.rawSources, chmod: b.baseOp.chmod },
    displayCmd: step.text,
    execute: () => run.opts.executor.runStep({ type: 'copy', tmpRoot: run.opts.layout.tmp, lowerDirs, op, driver: run.opts.storageDriver ?? 'overlay', ...finishOptions(run) }),
  };
}

/** The context files (or heredoc files, or downloads) a COPY/ADD names, each checked to exist and be seen by the build. */
async function contextSources(run: BuildRun, step: CopyStep, given: { raw: string[]; sel: CopySelection; ex: (w: string) => string; dest: string }, heredocDir: string | undefined, downloads: { dir?: string }): Promise<SourceSpec[]> {
  const { raw: rawSources, sel } = given;
  const { file } = run.plan;
  const sourceRoot = heredocDir ?? run.context.dir;
  const ignored = heredocDir ? () => false : run.context.isIgnored;
  const sources: SourceSpec[] = [];
  for (const raw of rawSources) {
    if (/^https?:\/\//.test(raw)) {
      if (step.kind === 'COPY') throw dockerfileError('ERR_FILE_NOT_FOUND', file, step.line, "COPY failed: source can't be a URL for COPY");
      downloads.dir ??= await makeTmpDir(run.opts.layout, 'add-url');
      sources.push(await downloadSource(raw, downloads.dir, file, step.line));
      if (step.checksum !== undefined) await verifyChecksum(sources[sources.length - 1]!.abs, given.ex(step.checksum), raw, file, step.line);
      continue;
    }
    const { clean, pivot } = sel.split(raw);
    if (clean === '..' || clean.startsWith('../')) {
      throw dockerfileError('ERR_CONTEXT_PATH', file, step.line, `${step.kind} failed: forbidden path outside the build context: ${raw} ()`);
    }
    const rels = hasWildcard(clean) ? await expandSourcePattern(sourceRoot, clean, ignored) : [clean];
    if (rels.length === 0) throw dockerfileError('ERR_FILE_NOT_FOUND', file, step.line, `${step.kind} failed: no source files were specified`);
    for (const rel of hasWildcard(clean) ? sel.filterMatches(rels) : rels) {
      const abs = await resolveInRoot(sourceRoot, rel);
      const exists = await fs.stat(abs).catch(() => undefined);
      if (!exists || (rel !== '.' && ignored(rel))) {
        throw dockerfileError('ERR_FILE_NOT_FOUND', file, step.line, `${step.kind} failed: file not found in build context or excluded by .dockerignore: stat ${rel}: file does not exist`);
      }
      const special = specialKind(exists);
      if (special) throw dockerfileError('ERR_CONTEXT_PATH', file, step.line, `${step.kind} failed: ${specialFileError(rel, special).message}`);
      const own = sel.destOf(given.dest, rel, pivot);
      sources.push({ rel, abs, ...(own !== undefined ? { dest: own } : {}) });
    }
  }
  return sources;
}


function multiError(step: CopyStep): SlipwayError {
  return new SlipwayError('ERR_COPY_DEST', `When using ${step.kind} with more than one source file, the destination must be a directory and end with a /`, { line: step.line });
}
