import fs from 'node:fs/promises';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { SlipwayError, dockerfileError } from '../errors.js';
import { DOCKER_VERSION, type ContainerConfigJson, type ImageJson } from '../image-config.js';
import type { Step } from '../dockerfile/step.js';
import type { StageState } from '../dockerfile/metadata.js';
import { EMPTY_LAYER_DIFF_ID, type CacheKey, type ImageId } from '../store/layout.js';
import { hasImage, makeTmpDir, registerImage } from '../store/graph.js';
import { imageIdOf } from '../cache/key.js';
import { cacheRecords, recordCache } from '../cache/cache-index.js';
import { writeStepHistory } from '../cache/history.js';
import type { FinishedLayer } from '../snapshot/finish-layer.js';
import type { LayerWork } from './layer-step.js';
import type { PreviousCopy } from './previous-copy.js';
import { recordMiss, useImage } from './recorder.js';
import type { BuildRun, StageTrack, StepPosition } from './run-types.js';

/** A missed step, resolved: what it runs, the configs, its key and why it missed. */
export interface Prepared {
  work: LayerWork | undefined;
  newConfig: ContainerConfigJson;
  containerConfig: ContainerConfigJson;
  key: string;
  text: string;
  identities: string[];
  reason: string;
  reasons: string[];
  /** The last build of this COPY step, when its unchanged files may be linked from its layer. */
  previous?: PreviousCopy;
}

/**
 * Executes a missed step and commits its image (and publishes it to the farm's cache). The id is
 * returned once the image is registered; `recorded` settles once its cache entry and history are
 * written, which go on beside the next steps (the step's lease is released after them). With a
 * farm, they and the publish are done before this returns (no `recorded`), and the leases are
 * released at once, as the farm's other workers wait on them.
 */
export async function runAndCommit(run: BuildRun, state: StageState, track: StageTrack, parent: ImageId | null, step: Step, pos: StepPosition, p: Prepared): Promise<{ id: ImageId; recorded?: Promise<void> }> {
  const { opts } = run;
  opts.onEvent({ type: 'cache-miss', reason: p.reason });
  const container = p.work?.container ?? crypto.randomBytes(32).toString('hex');
  // As the legacy builder: COPY and ADD make no container, so none is shown running or removed;
  // WORKDIR's is shown once made (its folder is made as the daemon creates the container, and a
  // file in the way fails before it is shown).
  const shown = step.kind !== 'COPY' && step.kind !== 'ADD';
  if (shown && step.kind !== 'WORKDIR') opts.onEvent({ type: 'running', container });
  const started = Date.now();
  const layer = p.work ? await executeWork(run, step, p.work, p.previous) : await emptyLayer(run);
  if (step.kind === 'WORKDIR') opts.onEvent({ type: 'running', container });
  const durationMs = Date.now() - started;
  const id = imageIdOf(parent, p.key, layer.diffId);
  const created = new Date().toISOString();
  const json = imageJson(id, parent, created, container, p, layer);
  // Before the registration, which moves the layer folder this may pack.
  await warnIfNotReproducible(run, p.key, p.text, layer, pos.n, step.text);
  await registerImage(opts.layout, { id, json, layerDir: layer.layerDir, diffId: layer.diffId, layerSize: layer.size, ...(layer.tarFile ? { originalTar: layer.tarFile } : {}) });
  await useImage(run, id);
  // The step's folder (its scratch; the layer has moved into the graph) goes beside the next steps.
  run.cleanups.push(fs.rm(path.dirname(layer.layerDir), { recursive: true, force: true }).catch(() => undefined));
  // Two independent records (each its own files, each written whole then renamed): at once.
  const recorded = Promise.all([
    recordCache(opts.layout, { key: p.key as CacheKey, preimage: p.text, imageId: id, created, durationMs, diffId: layer.diffId }),
    writeStepHistory(opts.layout, p.identities, { preimage: p.text, key: p.key, imageId: id, diffId: layer.diffId, durationMs, at: created }),
  ]).then(() => undefined);
  recorded.catch(() => undefined); // awaited by the caller, later: not an unhandled rejection meanwhile
  if (opts.remote) {
    await recorded;
    await opts.remote.publish(p.text, { id, json, diffId: layer.diffId, size: layer.size, durationMs, layerDir: opts.layout.layerDir(id) });
  }
  recordMiss(run, pos, step.text, { reason: p.reason, reasons: p.reasons, durationMs, bytes: layer.size, id });
  track.lastMiss = pos.n;
  state.config = p.newConfig;
  if (shown) opts.onEvent({ type: 'removed', container });
  return opts.remote ? { id } : { id, recorded };
}

/** Runs the step's file work; a failing RUN fails with Docker's message, naming its line. */
async function executeWork(run: BuildRun, step: Step, work: LayerWork, previous: PreviousCopy | undefined): Promise<FinishedLayer> {
  const res = await work.execute((t) => run.opts.onEvent({ type: 'output', text: t }), previous);
  if (res.ok) return res;
  if (res.error.code === 'ERR_STEP_FAILED' && res.exitCode !== undefined) {
    // Docker's message, unchanged; the line travels as data (the farm's result names it).
    const why = res.error.message.replace(/^returned a non-zero code: \d+/, '');
    throw new SlipwayError('ERR_STEP_FAILED', `The command '${work.displayCmd}' returned a non-zero code: ${res.exitCode}${why}`, { exitCode: res.exitCode, line: step.line, file: run.plan.file });
  }
  const e = SlipwayError.fromData(res.error);
  // A destination the step could not make names the step's line, as the checks before it do.
  if (e.code === 'ERR_COPY_DEST') throw dockerfileError(e.code, run.plan.file, step.line, e.message);
  throw e;
}

/** A metadata step's layer: an empty folder (the image is `throwaway`). */
async function emptyLayer(run: BuildRun): Promise<FinishedLayer> {
  const layerDir = path.join(await makeTmpDir(run.opts.layout, 'meta'), 'layer');
  mkdirSync(layerDir, { mode: 0o755 });
  return { layerDir, diffId: EMPTY_LAYER_DIFF_ID, size: 0, tarSize: 1024, empty: true };
}

/** The image JSON of a built step, in the legacy builder's form. */
function imageJson(id: ImageId, parent: ImageId | null, created: string, container: string, p: Prepared, layer: FinishedLayer): ImageJson {
  return {
    id,
    ...(parent ? { parent } : {}),
    created,
    container,
    container_config: { ...p.containerConfig, Hostname: container.slice(0, 12), Image: parent ?? '' },
    docker_version: DOCKER_VERSION,
    config: { ...p.newConfig, Hostname: '', Image: parent ?? '' },
    architecture: 'amd64',
    os: 'linux',
    Size: layer.size,
    ...(layer.empty ? { throwaway: true } : {}),
  };
}

/**
 * A key executed again (--no-cache, eviction) should give the same layer. Layers differ in
 * mtimes whenever a step touches files, so only a difference in content, modes or owners
 * (compared with mtimes clamped) is reported. This is the one place a layer is packed a second
 * time, and only for a key that was built before with another result.
 */
async function warnIfNotReproducible(run: BuildRun, key: string, preimage: string, layer: FinishedLayer, n: number, text: string): Promise<void> {
  const earlier = (await cacheRecords(run.opts.layout, key as CacheKey)).find((r) => r.preimage === preimage && r.diffId && r.diffId !== layer.diffId);
  if (!earlier) return;
  const oldDir = run.opts.layout.layerDir(earlier.imageId);
  if (!(await hasImage(run.opts.layout, earlier.imageId))) return;
  const { packLayer } = await import('../snapshot/pack.js');
  const [a, b] = await Promise.all([packLayer(oldDir, null, { clampMtime: 0 }), packLayer(layer.layerDir, null, { clampMtime: 0 })]);
  if (a.diffId !== b.diffId) run.opts.onEvent({ type: 'not-reproducible', n, text });
}
