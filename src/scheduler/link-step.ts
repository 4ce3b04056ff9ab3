import fs from 'node:fs/promises';
import path from 'node:path';
import crypto from 'node:crypto';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { dockerfileError, SlipwayError } from '../errors.js';
import { emptyContainerConfig, type ContainerConfigJson, type ImageJson } from '../image-config.js';
import { expandAt } from '../dockerfile/plan.js';
import { lookupIn, type StageState } from '../dockerfile/metadata.js';
import type { CopyStep, Step } from '../dockerfile/step.js';
import { resolveChown } from '../snapshot/rootfs.js';
import { hostTool } from '../snapshot/host-tools.js';
import { hasImage, makeTmpDir, readDiffId, readImage, readLayerSize, registerImage } from '../store/graph.js';
import { recordCache, type CacheRecord } from '../cache/cache-index.js';
import type { Preimage } from '../cache/explain.js';
import type { CacheKey, ImageId } from '../store/layout.js';
import { imageIdOf } from '../cache/key.js';
import { prepareLayerStep, type LayerWork } from './layer-step.js';
import type { BuildRun, StepExecutor } from './run-types.js';

/**
 * `COPY --link` / `ADD --link`, as BuildKit does it: the files are copied into an empty root,
 * and that layer is stacked on the parent. So the layer never depends on the parent's content:
 *
 * - its cache key leaves the parent out (only the sources, the destination, the resolved owner
 *   and mode, and the instruction), so a rebuild on a changed base finds it;
 * - such a hit on another parent is *re-stacked*: a new image (id from the new parent, the key
 *   and the unchanged diff id) with the new parent's config and a copy of the same layer;
 * - the destination's parents are created as plain 0755 folders in the layer, so a destination
 *   that is a symlink in the parent is replaced by a folder, never followed (BuildKit's
 *   documented difference from COPY without --link).
 *
 * The farm's shared cache is not used for these steps (its records carry the parent's id).
 */
export type LinkWork = LayerWork & { preimage: Preimage };

/** True for a COPY/ADD with --link. */
export function isLinkStep(step: Step): step is CopyStep {
  return (step.kind === 'COPY' || step.kind === 'ADD') && step.link;
}

/** The build without the farm's cache, for a --link step. */
export function withoutRemote(run: BuildRun): BuildRun {
  const { remote: _remote, ...opts } = run.opts;
  return { ...run, opts };
}

/** An executor whose copy steps run over an empty root instead of the parent's layers. */
function emptyRootExecutor(ex: StepExecutor): StepExecutor {
  return {
    runStep: (task, onOutput, signal) => ex.runStep({ ...task, lowerDirs: [] }, onOutput, signal),
    digest: <T>(task: unknown) => ex.digest<T>(task),
  };
}

/**
 * Prepares a --link COPY/ADD. `--chown=name` is still resolved against the parent's
 * `/etc/passwd` (the numbers, not the file, enter the key).
 */
export async function prepareLinkStep(run: BuildRun, state: StageState, step: CopyStep, lowerDirs: string[]): Promise<LinkWork> {
  const work = await prepareLayerStep({ ...run, opts: { ...run.opts, executor: emptyRootExecutor(run.opts.executor) } }, state, step, lowerDirs);
  let owner = { uid: 0, gid: 0 };
  const spec = step.chown !== undefined ? expandAt(run.plan.file, step.line, step.chown, lookupIn(state), run.escape) : '';
  if (spec !== '') {
    try {
      owner = await resolveChown(lowerDirs, spec);
    } catch (e) {
      if (e instanceof SlipwayError) throw dockerfileError(e.code, run.plan.file, step.line, e.message);
      throw e;
    }
  }
  const config: ContainerConfigJson = { ...emptyContainerConfig(), Cmd: work.cmd };
  const extra = { ...(work.keyExtra as object), link: true, owner } as Preimage['extra'];
  return { ...work, preimage: { v: 1, parent: '', config, result: emptyContainerConfig(), extra } };
}

/**
 * The id a --link hit has on `parent`: the cached image's own when it stands there, else the one
 * re-stacking gives it.
 */
export async function linkedImageId(layout: BuildRun['opts']['layout'], from: ImageId, parent: ImageId | null, key: string): Promise<ImageId> {
  if (((await readImage(layout, from)).parent ?? null) === parent) return from;
  return imageIdOf(parent, key, await readDiffId(layout, from));
}

/** What a re-stacked image needs from the step. */
export interface Restack {
  /** The cache record found (its image may stand on another parent); updated in place when moved. */
  record: CacheRecord;
  parent: ImageId | null;
  key: string;
  text: string;
  containerConfig: ContainerConfigJson;
  newConfig: ContainerConfigJson;
  /** The stage's explanation state: step `n` becomes the one that re-stacked its followers' parent. */
  track: { relinked?: number; lastMiss?: number };
  n: number;
}

/**
 * A cache hit of a --link step: the image itself when it already stands on `parent`, else a new
 * image on `parent` with the same layer (copied: each image owns its `layer/` folder), recorded
 * under the key so that the next build finds it directly. True when it moved (`record.imageId` then names the new image).
 */
export async function restackLinkLayer(run: BuildRun, a: Restack): Promise<boolean> {
  const { layout } = run.opts;
  const from = a.record.imageId;
  const id = await linkedImageId(layout, from, a.parent, a.key);
  if (id === from) return false;
  const old = await readImage(layout, from);
  const diffId = await readDiffId(layout, from);
  const created = new Date().toISOString();
  if (!(await hasImage(layout, id))) {
    const tmp = await makeTmpDir(layout, 'relink');
    try {
      const layerDir = path.join(tmp, 'layer');
      await promisify(execFile)(hostTool('cp'), ['-a', '--reflink=auto', layout.layerDir(from), layerDir]);
      const container = crypto.randomBytes(32).toString('hex');
      const { parent: _p, ...rest } = old;
      const json: ImageJson = {
        ...rest, id, ...(a.parent ? { parent: a.parent } : {}), created, container,
        container_config: { ...a.containerConfig, Hostname: container.slice(0, 12), Image: a.parent ?? '' },
        config: { ...a.newConfig, Hostname: '', Image: a.parent ?? '' },
      };
      await registerImage(layout, { id, json, layerDir, diffId, layerSize: await readLayerSize(layout, from) });
    } finally {
      await fs.rm(tmp, { recursive: true, force: true });
    }
  }
  await recordCache(layout, { key: a.key as CacheKey, preimage: a.text, imageId: id, created, durationMs: a.record.durationMs, diffId });
  a.record.imageId = id;
  a.track.relinked = a.n;
  delete a.track.lastMiss;
  return true;
}
