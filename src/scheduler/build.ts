import type { NetworkMode } from '../sandbox/oci-spec.js';
import type { SandboxOptions } from '../sandbox/container.js';
import fs from 'node:fs/promises';
import path from 'node:path';
import crypto from 'node:crypto';
import { SlipwayError } from '../errors.js';
import { cloneConfig, emptyContainerConfig, envGet, DEFAULT_PATH, DOCKER_VERSION, type ContainerConfigJson, type ImageJson } from '../image-config.js';
import { parseDockerfile } from '../dockerfile/parse.js';
import { planBuild, type Plan, type PlannedStage } from '../dockerfile/plan.js';
import { applyMetadata, isMetadataStep, type StageState } from '../dockerfile/metadata.js';
import type { Step } from '../dockerfile/step.js';
import { StoreLayout, EMPTY_LAYER_DIFF_ID, type ImageId, type CacheKey } from '../store/layout.js';
import { ensureStore, imageChain, readImage, registerImage, resolveImage, sweepTmp, makeTmpDir, readLayerSize, hasImage } from '../store/graph.js';
import { updateRepositories } from '../store/repositories.js';
import { parseReference, formatReference } from '../store/reference.js';
import { cacheKeyOf } from '../cache/key.js';
import { lookupCache, recordCache, cacheRecords } from '../cache/cache-index.js';
import { explainMiss, missReasons, type Preimage } from '../cache/explain.js';
import { newBuildId, readStepHistory, writeBuildRecord, writeStepHistory, type StepRecord } from '../cache/history.js';
import { clearRunning, markRunning } from '../cache/prune.js';
import type { RemoteCache } from './remote-cache.js';
import { loadContext, type BuildContext } from './context.js';
import { prepareLayerStep, type LayerWork } from './layer-step.js';
import { isLinkStep, prepareLinkStep, restackLinkLayer, withoutRemote } from './link-step.js';
import { claimStep } from './claim-step.js';
import type { WorkerPool } from './pool.js';
import type { BuildEvent } from './progress.js';
import { OrderedOutput } from './ordered-output.js';
import { sha256Hex } from '../fs.js';

/** What `build` needs. The Dockerfile defaults to `<context>/Dockerfile`. */
export interface BuildOptions {
  layout: StoreLayout;
  contextDir: string;
  dockerfile?: string;
  tags?: string[];
  buildArgs?: Record<string, string>;
  target?: string;
  noCache?: boolean;
  network?: NetworkMode;
  /** The host network may be asked for (`--network host`, `RUN --network=host`): an operator's entitlement. */
  allowHostNetwork?: boolean;
  /** How RUN steps are confined: runtime, user namespace, limits, timeout. */
  sandbox?: SandboxOptions;
  /** Rootfs assembly for RUN/COPY/ADD steps (default overlay). */
  storageDriver?: 'overlay' | 'vfs';
  pool: WorkerPool;
  onEvent: (e: BuildEvent) => void;
  signal?: AbortSignal;
  /** Predict each step's outcome from the cache and history; run nothing, write nothing. */
  plan?: boolean;
  /** False for a throwaway context folder (an uploaded tar), whose stat cache could never hit again. */
  persistStatCache?: boolean;
  /** The farm's shared cache, consulted on a local miss. */
  remote?: RemoteCache;
  /** Called for a FROM image the store lacks (the farm pulls it); true when it is there now. */
  fetchBase?: (ref: string) => Promise<boolean>;
  /** Clamp layer mtimes to this (seconds since the epoch), so layers are reproducible anywhere. */
  sourceDateEpoch?: number;
}

/** One stage's result. */
interface StageResult {
  id: ImageId | null;
  config: ContainerConfigJson;
  /** --plan: the stage is predicted to rebuild, so its result is not known yet. */
  unknown?: { step: number };
}

/** Where a step sits: its number, stage, and the identity its history is kept under. */
interface StepPosition { n: number; stage: number; index: number | string; firstInStage: boolean }

/** Per-stage bookkeeping for explanations and --plan. */
interface StageTrack { lastMiss?: number; unknownFrom?: number; relinked?: number }

/** Per-build state the step executor needs. */
export interface BuildRun {
  opts: BuildOptions;
  plan: Plan;
  context: BuildContext;
  /** Each stage's result, as a promise: a stage that needs another (FROM, COPY --from) awaits it. */
  stages: Map<number, Promise<StageResult>>;
  escape: string;
  /** The stage a step belongs to. */
  currentStage?: number;
  /** Step records of this build (for stats and the summary line). */
  records: StepRecord[];
  /** What names this build's steps in the history: the first tag, else the Dockerfile path. */
  historyName: string;
  buildId: string;
  /** Images this build stands on; `prune` keeps them while it runs. */
  inUse: Set<string>;
}

/**
 * Builds a Dockerfile: parse and plan (pure; a bad Dockerfile fails here, before the store
 * is touched), then each stage's steps in order. A step is looked up in the cache by its key;
 * a miss runs in the worker pool (RUN/COPY/ADD/WORKDIR) or in memory (metadata), and is
 * committed atomically as a new image whose parent is the previous step.
 */
export async function build(opts: BuildOptions): Promise<{ id: ImageId }> {
  const dockerfilePath = path.resolve(opts.contextDir, opts.dockerfile ?? 'Dockerfile');
  let text: string;
  try {
    text = await fs.readFile(dockerfilePath, 'utf8');
  } catch {
    throw new SlipwayError('ERR_USAGE', `Cannot locate specified Dockerfile: ${opts.dockerfile ?? 'Dockerfile'}`);
  }
  const displayName = path.basename(dockerfilePath);
  const df = parseDockerfile(text, displayName);
  const plan = planBuild(df, { buildArgs: opts.buildArgs ?? {}, target: opts.target });
  for (const t of opts.tags ?? []) parseReference(t);
  validateFromFlags(plan);
  // Every base image must exist before anything runs, so a typo in a later FROM fails cleanly.
  for (const stage of plan.stages) if (stage.baseStage === undefined && stage.base !== 'scratch') await baseOf({ opts, plan } as BuildRun, stage);
  await ensureStore(opts.layout);
  await sweepTmp(opts.layout);
  const context = await loadContext(opts.contextDir, opts.layout);
  for (const w of df.warnings) opts.onEvent({ type: 'warning', text: w });
  const historyName = opts.tags?.[0] ? formatReference(parseReference(opts.tags[0])) : dockerfilePath;
  const run: BuildRun = { opts, plan, context, stages: new Map(), escape: df.escape, records: [], historyName, buildId: newBuildId(), inUse: new Set() };
  const started = new Date();
  const record = async (result: 'success' | 'failure', error?: string) => {
    if (opts.plan) return;
    await writeBuildRecord(opts.layout, {
      id: run.buildId, tags: (opts.tags ?? []).map((t) => formatReference(parseReference(t))), dockerfile: dockerfilePath,
      started: started.toISOString(), durationMs: Date.now() - started.getTime(), result, ...(error ? { error } : {}), steps: run.records,
    }).catch(() => undefined);
  };

  for (const a of plan.globalArgs) opts.onEvent({ type: 'step', n: 0 + plan.globalArgs.indexOf(a) + 1, total: plan.total, text: a.text });
  let last: StageResult;
  try {
    last = await buildStages(run);
  } catch (e) {
    await record('failure', (e as Error).message);
    throw e;
  } finally {
    if (!opts.plan) await clearRunning(opts.layout, run.buildId);
  }
  // A build that made no image (only `FROM scratch`) fails below and must leave the store as it was.
  if (!opts.plan && opts.persistStatCache !== false && last.id) await context.saveStatCache();
  if (opts.plan) {
    summarize(run);
    return { id: (last.id ?? '') as ImageId };
  }
  const finalId = last.id;
  if (!finalId) throw new SlipwayError('ERR_USAGE', 'No image was generated. Is your Dockerfile empty?');
  await record('success');
  opts.onEvent({ type: 'built', id: finalId });
  if (opts.tags && opts.tags.length > 0) {
    const refs = opts.tags.map(parseReference);
    await updateRepositories(opts.layout, (r) => {
      for (const ref of refs) (r.Repositories[ref.repository] ??= {})[ref.tag] = finalId;
    });
    for (const ref of refs) opts.onEvent({ type: 'tagged', ref: formatReference(ref) });
  }
  summarize(run);
  return { id: finalId };
}

/** The closing line: `Cache: 7/9 steps (78 %), 41.2 s saved`. */
function summarize(run: BuildRun): void {
  const steps = run.records.length;
  const hits = run.records.filter((r) => r.hit).length;
  const savedMs = run.records.reduce((a, r) => a + r.savedMs, 0);
  run.opts.onEvent({ type: 'summary', hits, steps, savedMs });
}

/**
 * Starts every stage at once; each awaits the stages it needs (its base, its COPY --from
 * sources), so independent stages run in parallel in the pool. The first failure cancels the
 * rest and is the build's error.
 */
async function buildStages(run: BuildRun): Promise<StageResult> {
  const { opts, plan } = run;
  const output = new OrderedOutput(plan.stages.map((s) => s.index), opts.onEvent);
  const inner = new AbortController();
  const onOuterAbort = () => inner.abort();
  opts.signal?.addEventListener('abort', onOuterAbort);
  let firstError: unknown;
  const all: Array<Promise<StageResult>> = [];
  for (const stage of plan.stages) {
    const stageRun: BuildRun = { ...run, currentStage: stage.index, opts: { ...opts, onEvent: output.channel(stage.index), signal: inner.signal } };
    const p = (async () => {
      try {
        return await buildStage(stageRun, stage);
      } catch (e) {
        firstError ??= e;
        inner.abort();
        throw e;
      } finally {
        output.finish(stage.index);
      }
    })();
    p.catch(() => undefined);
    run.stages.set(stage.index, p);
    all.push(p);
  }
  try {
    await Promise.allSettled(all);
    if (firstError !== undefined) throw firstError;
    return await all[all.length - 1]!;
  } finally {
    opts.signal?.removeEventListener('abort', onOuterAbort);
  }
}

/** `COPY --from=N` must name an earlier stage (Docker: "index out of bounds"). */
function validateFromFlags(plan: Plan): void {
  for (const stage of plan.stages) {
    for (const step of stage.steps) {
      if ((step.kind === 'COPY' || step.kind === 'ADD') && step.from !== undefined && /^\d+$/.test(step.from)) {
        if (Number(step.from) >= stage.index) {
          throw new SlipwayError('ERR_UNKNOWN_STAGE', `${plan.file}:${step.line}: invalid from flag value ${step.from}: index out of bounds`, { line: step.line });
        }
      }
    }
  }
}

async function baseOf(run: BuildRun, stage: PlannedStage): Promise<StageResult> {
  if (stage.baseStage !== undefined) return await run.stages.get(stage.baseStage)!;
  if (stage.base === 'scratch') return { id: null, config: emptyContainerConfig() };
  const notHere = (): SlipwayError => new SlipwayError('ERR_IMAGE_NOT_FOUND', `${run.plan.file}:${stage.from.line}: pull access denied for ${stage.base}, repository does not exist or may require 'docker login' (no such image in this store; import or pull it first)`, { line: stage.from.line });
  let id: ImageId;
  try {
    id = await resolveImage(run.opts.layout, stage.base);
  } catch (e) {
    if (!(e instanceof SlipwayError && e.code === 'ERR_IMAGE_NOT_FOUND')) throw e;
    // A missing base is pulled (--plan writes nothing, so it only says so); the pull's own
    // errors, in Docker's words, are the build's.
    if (!run.opts.fetchBase || run.opts.plan || !(await run.opts.fetchBase(stage.base))) throw notHere();
    id = await resolveImage(run.opts.layout, stage.base).catch(() => { throw notHere(); });
  }
  const json = await readImage(run.opts.layout, id);
  return { id, config: json.config ?? emptyContainerConfig() };
}

async function buildStage(run: BuildRun, stage: PlannedStage): Promise<StageResult> {
  const { onEvent } = run.opts;
  onEvent({ type: 'step', n: stage.firstNumber, total: run.plan.total, text: stage.from.text });
  const base = await baseOf(run, stage);
  if (base.id) onEvent({ type: 'base', id: base.id });
  if (base.id && !run.opts.plan) await useImage(run, base.id);
  const config = cloneConfig(base.config);
  // Docker's legacy builder gives every stage a PATH when the base has none.
  if (envGet(config.Env, 'PATH') === undefined) config.Env = [...(config.Env ?? []), DEFAULT_PATH];
  const triggers = config.OnBuild ?? [];
  config.OnBuild = null;
  const state: StageState = {
    config, args: new Map(), cmdSet: false, buildArgs: run.plan.buildArgs, globalArgs: run.plan.globalArgValues,
    file: run.plan.file, escape: run.escape,
  };
  const track: StageTrack = base.unknown ? { unknownFrom: base.unknown.step } : {};
  let cur: ImageId | null = base.id;
  let first = true;
  if (triggers.length > 0) {
    onEvent({ type: 'triggers', count: triggers.length });
    for (const [i, t] of triggers.entries()) {
      const parsed = parseDockerfile(t, run.plan.file).steps[0];
      if (!parsed) continue;
      const pos: StepPosition = { n: stage.firstNumber, stage: stage.index, index: `trigger-${i}`, firstInStage: first };
      cur = await executeStep(run, state, track, cur, { ...parsed, line: stage.from.line, endLine: stage.from.line }, pos);
      first = false;
    }
    if (cur) onEvent({ type: 'image', id: cur });
  }
  for (let i = 0; i < stage.steps.length; i++) {
    const step = stage.steps[i]!;
    if (run.opts.signal?.aborted) throw new SlipwayError('ERR_CANCELLED', 'build cancelled');
    const n = stage.firstNumber + 1 + i;
    onEvent({ type: 'step', n, total: run.plan.total, text: step.text });
    cur = await executeStep(run, state, track, cur, step, { n, stage: stage.index, index: i, firstInStage: first });
    first = false;
    if (!run.opts.plan) onEvent({ type: 'image', id: cur });
  }
  return { id: cur, config: state.config, ...(track.unknownFrom !== undefined ? { unknown: { step: track.unknownFrom } } : {}) };
}

/** Docker's configs carry the container's hostname and parent image; neither belongs in a cache key. */
function keyConfig(c: ContainerConfigJson): ContainerConfigJson {
  return { ...c, Hostname: '', Image: '' };
}

/** The miss explanation (short and in full) of a step against its previous preimage. */
function explainBoth(prev: Preimage | undefined, cur: Preimage, pos: StepPosition, track: StageTrack): { reason: string; reasons: string[] } {
  const ctx = { firstInStage: pos.firstInStage, ...(track.lastMiss !== undefined ? { parentRebuiltStep: track.lastMiss } : {}), ...(track.relinked !== undefined ? { parentRelinkedStep: track.relinked } : {}) };
  return { reason: explainMiss(prev, cur, ctx), reasons: missReasons(prev, cur, ctx) };
}

/**
 * Runs one step (or finds it in the cache) and returns the new image id. Metadata steps are
 * computed here; RUN/COPY/ADD/WORKDIR go to the worker pool. A miss is explained against the
 * step's history; every outcome is recorded for `stats`.
 */
async function executeStep(run: BuildRun, state: StageState, track: StageTrack, parent: ImageId | null, step: Step, pos: StepPosition): Promise<ImageId> {
  const { opts } = isLinkStep(step) ? (run = withoutRemote(run)) : run;
  const identities = [`${run.historyName}|${pos.stage}|${pos.index}`];
  if (step.kind === 'FROM') throw new SlipwayError('ERR_DOCKERFILE_SYNTAX', `${run.plan.file}:${step.line}: FROM isn't allowed as an ONBUILD trigger`);
  if (opts.plan && track.unknownFrom !== undefined) {
    // --plan past a predicted miss: the parent id is unknown, so this step rebuilds too.
    if (isMetadataStep(step)) state.config = applyMetadata(step, state).config;
    const hist = await readStepHistory(opts.layout, identities[0]!);
    opts.onEvent({ type: 'predict', n: pos.n, hit: false, reason: `parent rebuilt (step ${track.unknownFrom})`, ...(hist ? { estimateMs: hist.durationMs } : {}) });
    run.records.push({ n: pos.n, stage: pos.stage, text: step.text, hit: false, reason: 'parent rebuilt', source: 'local', durationMs: 0, bytes: 0, savedMs: 0, imageId: '' });
    return (parent ?? '') as ImageId;
  }
  let work: LayerWork | undefined;
  let newConfig: ContainerConfigJson;
  let cmd: string[];
  if (isMetadataStep(step)) {
    const r = applyMetadata(step, state);
    newConfig = r.config;
    cmd = r.cmd;
  } else {
    const lowerDirs = parent ? await lowerDirsOf(opts.layout, parent) : [];
    work = isLinkStep(step) ? await prepareLinkStep(run, state, step, lowerDirs) : await prepareLayerStep(run, state, step, lowerDirs);
    newConfig = work.config;
    cmd = work.cmd;
  }
  const containerConfig: ContainerConfigJson = { ...(work?.runConfig ?? newConfig), Cmd: cmd };
  const preimage: Preimage = (work && 'preimage' in work ? (work.preimage as Preimage) : undefined) ?? { v: 1, parent: parent ?? '', config: keyConfig(containerConfig), result: keyConfig(newConfig), extra: (work?.keyExtra ?? null) as Preimage['extra'] };
  const { key, text } = await cacheKeyOf(preimage);
  identities.push(`${parent ?? ''}|${cmd.join(' ')}`);
  const explain = async (): Promise<{ reason: string; reasons: string[] }> => {
    if (opts.noCache) return { reason: 'no-cache requested', reasons: ['no-cache requested'] };
    const prev = (await readStepHistory(opts.layout, identities[0]!)) ?? (await readStepHistory(opts.layout, identities[1]!));
    return explainBoth(prev ? (JSON.parse(prev.preimage) as Preimage) : undefined, preimage, pos, track);
  };
  if (opts.plan) return predictStep(run, state, track, parent, step, pos, { key, text, identities, newConfig, explain });
  const claim = await claimStep(opts, { key, text, parent, n: pos.n });
  const moved = claim.kind === 'hit' && isLinkStep(step) && (await restackLinkLayer(run, { record: claim.record, parent, key, text, containerConfig, newConfig, track, n: pos.n }));
  if (claim.kind === 'hit') {
    state.config = newConfig;
    await useImage(run, claim.record.imageId);
    opts.onEvent({ type: 'cache-hit', n: pos.n, ...(moved ? { note: 'COPY --link: its layer, unchanged, stacked on the new parent' } : {}) });
    run.records.push({ n: pos.n, stage: pos.stage, text: step.text, hit: true, source: 'local', durationMs: 0, bytes: await readLayerSize(opts.layout, claim.record.imageId).catch(() => 0), savedMs: claim.record.durationMs, imageId: claim.record.imageId });
    return claim.record.imageId;
  }
  try {
    if (claim.kind === 'remote') {
      state.config = newConfig;
      await useImage(run, claim.id);
      await recordCache(opts.layout, { key: key as CacheKey, preimage: text, imageId: claim.id, created: new Date().toISOString(), durationMs: claim.durationMs });
      opts.onEvent({ type: 'cache-hit', n: pos.n, source: 'remote' });
      run.records.push({ n: pos.n, stage: pos.stage, text: step.text, hit: true, source: 'remote', durationMs: 0, bytes: await readLayerSize(opts.layout, claim.id).catch(() => 0), savedMs: claim.durationMs, imageId: claim.id });
      return claim.id;
    }
    const { reason, reasons } = await explain();
    return await runAndCommit(run, state, track, parent, step, pos, { work, newConfig, containerConfig, key, text, identities, reason, reasons });
  } finally {
    await claim.release();
  }
}

/** --plan: predicts the step from the cache and its history; runs and writes nothing. */
async function predictStep(
  run: BuildRun, state: StageState, track: StageTrack, parent: ImageId | null, step: Step, pos: StepPosition,
  p: { key: string; text: string; identities: string[]; newConfig: ContainerConfigJson; explain: () => Promise<{ reason: string }> },
): Promise<ImageId> {
  const { opts } = run;
  const hit = opts.noCache ? undefined : await lookupCache(opts.layout, p.key as CacheKey, p.text);
  const reason = hit ? undefined : (await p.explain()).reason;
  const hist = await readStepHistory(opts.layout, p.identities[0]!);
  opts.onEvent({ type: 'predict', n: pos.n, hit: !!hit, ...(reason ? { reason } : {}), ...(hit ? { estimateMs: 0 } : hist ? { estimateMs: hist.durationMs } : {}) });
  run.records.push({ n: pos.n, stage: pos.stage, text: step.text, hit: !!hit, ...(reason ? { reason } : {}), source: 'local', durationMs: 0, bytes: 0, savedMs: hit?.durationMs ?? 0, imageId: hit?.imageId ?? '' });
  state.config = p.newConfig;
  if (hit) return hit.imageId;
  track.unknownFrom = pos.n;
  return (parent ?? '') as ImageId;
}

interface Prepared {
  work: LayerWork | undefined;
  newConfig: ContainerConfigJson;
  containerConfig: ContainerConfigJson;
  key: string;
  text: string;
  identities: string[];
  reason: string;
  reasons: string[];
}

/** Executes a missed step and commits its image (and publishes it to the farm's cache). */
async function runAndCommit(run: BuildRun, state: StageState, track: StageTrack, parent: ImageId | null, step: Step, pos: StepPosition, p: Prepared): Promise<ImageId> {
  const { opts } = run;
  const { work, newConfig, containerConfig, key, text, identities, reason, reasons } = p;
  opts.onEvent({ type: 'cache-miss', reason });
  const container = work?.container ?? crypto.randomBytes(32).toString('hex');
  opts.onEvent({ type: 'running', container });
  const started = Date.now();
  let layerDir: string;
  let diffId: string;
  let size: number;
  let empty: boolean;
  if (work) {
    const res = await work.execute((t) => opts.onEvent({ type: 'output', text: t }));
    if (!res.ok) {
      if (res.error.code === 'ERR_STEP_FAILED' && res.exitCode !== undefined) {
        // Docker's message, unchanged; the line travels as data (the farm's result names it).
        const why = res.error.message.replace(/^returned a non-zero code: \d+/, '');
        throw new SlipwayError('ERR_STEP_FAILED', `The command '${work.displayCmd}' returned a non-zero code: ${res.exitCode}${why}`, { exitCode: res.exitCode, line: step.line, file: run.plan.file });
      }
      throw SlipwayError.fromData(res.error);
    }
    ({ layerDir, diffId, size, empty } = res);
  } else {
    layerDir = path.join(await makeTmpDir(opts.layout, 'meta'), 'layer');
    await fs.mkdir(layerDir, { mode: 0o755 });
    diffId = EMPTY_LAYER_DIFF_ID;
    size = 0;
    empty = true;
  }
  const durationMs = Date.now() - started;
  await warnIfNotReproducible(run, key, text, diffId, layerDir, pos.n, step.text);
  const id = sha256Hex(`${parent ?? ''}\n${key}\n${diffId}`) as ImageId;
  const created = new Date().toISOString();
  const json: ImageJson = {
    id,
    ...(parent ? { parent } : {}),
    created,
    container,
    container_config: { ...containerConfig, Hostname: container.slice(0, 12), Image: parent ?? '' },
    docker_version: DOCKER_VERSION,
    config: { ...newConfig, Hostname: '', Image: parent ?? '' },
    architecture: 'amd64',
    os: 'linux',
    Size: size,
    ...(empty ? { throwaway: true } : {}),
  };
  await registerImage(opts.layout, { id, json, layerDir, diffId, layerSize: size });
  await useImage(run, id);
  await fs.rm(path.dirname(layerDir), { recursive: true, force: true });
  await recordCache(opts.layout, { key: key as CacheKey, preimage: text, imageId: id, created, durationMs, diffId });
  if (opts.remote) await opts.remote.publish(text, { id, json, diffId, size, durationMs, layerDir: opts.layout.layerDir(id) });
  await writeStepHistory(opts.layout, identities, { preimage: text, key, imageId: id, diffId, durationMs, at: created });
  run.records.push({ n: pos.n, stage: pos.stage, text: step.text, hit: false, reason, reasons, source: 'local', durationMs, bytes: size, savedMs: 0, imageId: id });
  track.lastMiss = pos.n;
  state.config = newConfig;
  opts.onEvent({ type: 'removed', container });
  return id;
}

/** Records that this build stands on `id` (prune keeps it and its parents while the build runs). */
async function useImage(run: BuildRun, id: string): Promise<void> {
  if (run.inUse.has(id)) return;
  run.inUse.add(id);
  await markRunning(run.opts.layout, run.buildId, [...run.inUse]);
}

/**
 * A key executed again (--no-cache, eviction) should give the same layer. Layers differ in
 * mtimes whenever a step touches files, so only a difference in content, modes or owners
 * (compared with mtimes clamped) is reported.
 */
async function warnIfNotReproducible(run: BuildRun, key: string, preimage: string, diffId: string, layerDir: string, n: number, text: string): Promise<void> {
  const earlier = (await cacheRecords(run.opts.layout, key as CacheKey)).find((r) => r.preimage === preimage && r.diffId && r.diffId !== diffId);
  if (!earlier) return;
  const oldDir = run.opts.layout.layerDir(earlier.imageId);
  if (!(await hasImage(run.opts.layout, earlier.imageId))) return;
  const { packLayer } = await import('../snapshot/pack.js');
  const [a, b] = await Promise.all([packLayer(oldDir, null, { clampMtime: 0 }), packLayer(layerDir, null, { clampMtime: 0 })]);
  if (a.diffId !== b.diffId) run.opts.onEvent({ type: 'not-reproducible', n, text });
}

/** The layer folders of an image's chain that hold files, top-most first (overlay lowerdir order). */
export async function lowerDirsOf(layout: StoreLayout, id: ImageId): Promise<string[]> {
  const chain = await imageChain(layout, id);
  return chain.filter((c) => !c.json.throwaway).map((c) => layout.layerDir(c.id));
}
