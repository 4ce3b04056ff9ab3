import fs from 'node:fs/promises';
import path from 'node:path';
import crypto from 'node:crypto';
import { SlipwayError } from '../errors.js';
import { cloneConfig, emptyContainerConfig, envGet, DEFAULT_PATH, DOCKER_VERSION, type ContainerConfigJson, type ImageJson } from '../image-config.js';
import { parseDockerfile } from '../dockerfile/parse.js';
import { planBuild, type Plan, type PlannedStage } from '../dockerfile/plan.js';
import { applyMetadata, isMetadataStep, type StageState } from '../dockerfile/metadata.js';
import type { Step } from '../dockerfile/step.js';
import { StoreLayout, type ImageId, type CacheKey } from '../store/layout.js';
import { ensureStore, imageChain, readImage, registerImage, resolveImage, sweepTmp, makeTmpDir } from '../store/graph.js';
import { updateRepositories } from '../store/repositories.js';
import { parseReference, formatReference } from '../store/reference.js';
import { cacheKeyOf } from '../cache/key.js';
import { lookupCache, recordCache } from '../cache/cache-index.js';
import { loadContext, type BuildContext } from './context.js';
import { prepareLayerStep, type LayerWork } from './layer-step.js';
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
  network?: 'host' | 'none';
  /** Rootfs assembly for RUN/COPY/ADD steps (default overlay). */
  storageDriver?: 'overlay' | 'vfs';
  pool: WorkerPool;
  onEvent: (e: BuildEvent) => void;
  signal?: AbortSignal;
}

/** One stage's result. */
interface StageResult { id: ImageId | null; config: ContainerConfigJson }

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
  const run: BuildRun = { opts, plan, context, stages: new Map(), escape: df.escape };

  for (const a of plan.globalArgs) opts.onEvent({ type: 'step', n: 0 + plan.globalArgs.indexOf(a) + 1, total: plan.total, text: a.text });
  const last = await buildStages(run);
  const finalId = last.id;
  if (!finalId) throw new SlipwayError('ERR_USAGE', 'No image was generated. Is your Dockerfile empty?');
  await context.saveStatCache();
  opts.onEvent({ type: 'built', id: finalId });
  if (opts.tags && opts.tags.length > 0) {
    const refs = opts.tags.map(parseReference);
    await updateRepositories(opts.layout, (r) => {
      for (const ref of refs) (r.Repositories[ref.repository] ??= {})[ref.tag] = finalId;
    });
    for (const ref of refs) opts.onEvent({ type: 'tagged', ref: formatReference(ref) });
  }
  return { id: finalId };
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
  let id: ImageId;
  try {
    id = await resolveImage(run.opts.layout, stage.base);
  } catch (e) {
    if (e instanceof SlipwayError && e.code === 'ERR_IMAGE_NOT_FOUND') {
      throw new SlipwayError('ERR_IMAGE_NOT_FOUND', `${run.plan.file}:${stage.from.line}: pull access denied for ${stage.base}, repository does not exist or may require 'docker login' (no such image in this store; import or pull it first)`, { line: stage.from.line });
    }
    throw e;
  }
  const json = await readImage(run.opts.layout, id);
  return { id, config: json.config ?? emptyContainerConfig() };
}

async function buildStage(run: BuildRun, stage: PlannedStage): Promise<StageResult> {
  const { onEvent } = run.opts;
  onEvent({ type: 'step', n: stage.firstNumber, total: run.plan.total, text: stage.from.text });
  const base = await baseOf(run, stage);
  if (base.id) onEvent({ type: 'base', id: base.id });
  const config = cloneConfig(base.config);
  // Docker's legacy builder gives every stage a PATH when the base has none.
  if (envGet(config.Env, 'PATH') === undefined) config.Env = [...(config.Env ?? []), DEFAULT_PATH];
  const triggers = config.OnBuild ?? [];
  config.OnBuild = null;
  const state: StageState = {
    config, args: new Map(), cmdSet: false, buildArgs: run.plan.buildArgs, globalArgs: run.plan.globalArgValues,
    file: run.plan.file, escape: run.escape,
  };
  let cur: ImageId | null = base.id;
  if (triggers.length > 0) {
    onEvent({ type: 'triggers', count: triggers.length });
    for (const t of triggers) {
      const parsed = parseDockerfile(t, run.plan.file).steps[0];
      if (!parsed) continue;
      cur = await executeStep(run, state, cur, { ...parsed, line: stage.from.line, endLine: stage.from.line }, true);
    }
    if (cur) onEvent({ type: 'image', id: cur });
  }
  for (let i = 0; i < stage.steps.length; i++) {
    const step = stage.steps[i]!;
    if (run.opts.signal?.aborted) throw new SlipwayError('ERR_CANCELLED', 'build cancelled');
    onEvent({ type: 'step', n: stage.firstNumber + 1 + i, total: run.plan.total, text: step.text });
    cur = await executeStep(run, state, cur, step, false);
    onEvent({ type: 'image', id: cur });
  }
  return { id: cur, config: state.config };
}

/** Docker's configs carry the container's hostname and parent image; neither belongs in a cache key. */
function keyConfig(c: ContainerConfigJson): ContainerConfigJson {
  return { ...c, Hostname: '', Image: '' };
}

/**
 * Runs one step (or finds it in the cache) and returns the new image id. Metadata steps are
 * computed here; RUN/COPY/ADD/WORKDIR go to the worker pool.
 */
async function executeStep(run: BuildRun, state: StageState, parent: ImageId | null, step: Step, trigger: boolean): Promise<ImageId> {
  const { opts } = run;
  let work: LayerWork | undefined;
  let newConfig: ContainerConfigJson;
  let cmd: string[];
  if (step.kind === 'FROM') throw new SlipwayError('ERR_DOCKERFILE_SYNTAX', `${run.plan.file}:${step.line}: FROM isn't allowed as an ONBUILD trigger`);
  if (isMetadataStep(step)) {
    const r = applyMetadata(step, state);
    newConfig = r.config;
    cmd = r.cmd;
  } else {
    const lowerDirs = parent ? await lowerDirsOf(opts.layout, parent) : [];
    work = await prepareLayerStep(run, state, step, lowerDirs);
    newConfig = work.config;
    cmd = work.cmd;
  }
  const containerConfig: ContainerConfigJson = { ...(work?.runConfig ?? newConfig), Cmd: cmd };
  const preimage = { v: 1, parent: parent ?? '', config: keyConfig(containerConfig), result: keyConfig(newConfig), extra: work?.keyExtra ?? null };
  const { key, text } = await cacheKeyOf(preimage);
  if (!opts.noCache) {
    const hit = await lookupCache(opts.layout, key, text);
    if (hit) {
      state.config = newConfig;
      opts.onEvent({ type: 'cache-hit', n: step.line });
      void trigger;
      return hit.imageId;
    }
  }
  const container = crypto.randomBytes(32).toString('hex');
  opts.onEvent({ type: 'running', container });
  const started = Date.now();
  let layerDir: string;
  let diffId: string;
  let size: number;
  let empty: boolean;
  if (work) {
    const res = await work.execute((t) => opts.onEvent({ type: 'output', text: t }));
    if (!res.ok) {
      if (res.error.code === 'ERR_STEP_FAILED') {
        throw new SlipwayError('ERR_STEP_FAILED', `The command '${work.displayCmd}' returned a non-zero code: ${res.exitCode ?? 1}`, { exitCode: res.exitCode ?? 1 });
      }
      throw SlipwayError.fromData(res.error);
    }
    ({ layerDir, diffId, size, empty } = res);
  } else {
    layerDir = path.join(await makeTmpDir(opts.layout, 'meta'), 'layer');
    await fs.mkdir(layerDir, { mode: 0o755 });
    diffId = 'sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef';
    size = 0;
    empty = true;
  }
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
  await fs.rm(path.dirname(layerDir), { recursive: true, force: true });
  await recordCache(opts.layout, { key: key as CacheKey, preimage: text, imageId: id, created, durationMs: Date.now() - started });
  state.config = newConfig;
  opts.onEvent({ type: 'removed', container });
  return id;
}

/** The layer folders of an image's chain that hold files, top-most first (overlay lowerdir order). */
export async function lowerDirsOf(layout: StoreLayout, id: ImageId): Promise<string[]> {
  const chain = await imageChain(layout, id);
  return chain.filter((c) => !c.json.throwaway).map((c) => layout.layerDir(c.id));
}
