import { SlipwayError } from '../errors.js';
import type { ContainerConfigJson } from '../image-config.js';
import { applyMetadata, isMetadataStep, type StageState } from '../dockerfile/metadata.js';
import type { Step } from '../dockerfile/step.js';
import { lowerDirsOf } from '../store/graph.js';
import type { CacheKey, ImageId } from '../store/layout.js';
import { cacheKeyOf } from '../cache/key.js';
import { recordCache } from '../cache/cache-index.js';
import { explainMiss, missReasons, type Preimage } from '../cache/explain.js';
import { readStepHistory } from '../cache/history.js';
import { previousCopy, type PreviousCopy } from './previous-copy.js';
import { prepareLayerStep, type LayerWork } from './layer-step.js';
import { isLinkStep, prepareLinkStep, restackLinkLayer, withoutRemote } from './link-step.js';
import { claimStep } from './claim-step.js';
import { predictPastMiss, predictStep } from './plan-step.js';
import { runAndCommit } from './commit.js';
import { recordHit } from './recorder.js';
import type { BuildRun, StageTrack, StepPosition } from './run-types.js';

/** Docker's configs carry the container's hostname and parent image; neither belongs in a cache key. */
function keyConfig(c: ContainerConfigJson): ContainerConfigJson {
  return { ...c, Hostname: '', Image: '' };
}

/** A step resolved against its stage: the work it would do, its configs, and its cache key. */
interface Resolved {
  work: LayerWork | undefined;
  newConfig: ContainerConfigJson;
  containerConfig: ContainerConfigJson;
  preimage: Preimage;
  key: string;
  text: string;
}

async function resolveStep(run: BuildRun, state: StageState, parent: ImageId | null, step: Step): Promise<Resolved> {
  let work: LayerWork | undefined;
  let newConfig: ContainerConfigJson;
  let cmd: string[];
  if (isMetadataStep(step)) {
    ({ config: newConfig, cmd } = applyMetadata(step, state));
  } else {
    if (step.kind === 'FROM') throw new Error('unreachable: FROM is refused before');
    const lowerDirs = parent ? await lowerDirsOf(run.opts.layout, parent) : [];
    work = isLinkStep(step) ? await prepareLinkStep(run, state, step, lowerDirs) : await prepareLayerStep(run, state, step, lowerDirs);
    ({ config: newConfig, cmd } = work);
  }
  const containerConfig: ContainerConfigJson = { ...(work?.runConfig ?? newConfig), Cmd: cmd };
  // A COPY --link step brings its own preimage, without the parent (link-step.ts).
  const own = work && 'preimage' in work ? (work.preimage as Preimage) : undefined;
  const preimage: Preimage = own ?? { v: 1, parent: parent ?? '', config: keyConfig(containerConfig), result: keyConfig(newConfig), extra: (work?.keyExtra ?? null) as Preimage['extra'] };
  const { key, text } = await cacheKeyOf(preimage);
  return { work, newConfig, containerConfig, preimage, key, text };
}

/**
 * Runs one step (or finds it in a cache) and returns the new image id. Metadata steps are
 * computed here; RUN/COPY/ADD/WORKDIR go to the executor. A miss is explained against the
 * step's history; every outcome is recorded for `stats`.
 */
export async function executeStep(given: BuildRun, state: StageState, track: StageTrack, parent: ImageId | null, step: Step, pos: StepPosition): Promise<ImageId> {
  // The farm's records carry the parent's id: a --link step does not use the farm's cache.
  const run = isLinkStep(step) ? withoutRemote(given) : given;
  const { opts } = run;
  const identities = [`${run.historyName}|${pos.stage}|${pos.index}`];
  if (step.kind === 'FROM') throw new SlipwayError('ERR_DOCKERFILE_SYNTAX', `${run.plan.file}:${step.line}: FROM isn't allowed as an ONBUILD trigger`, { line: step.line, file: run.plan.file });
  if (opts.plan && track.unknownFrom !== undefined) return predictPastMiss(run, state, track, parent, step, pos, identities[0]!);
  const replaced = step.kind === 'HEALTHCHECK' ? state.config.Healthcheck?.Test : undefined;
  // As Docker's legacy builder, at the instruction, hit or miss (Go's %v of a string slice).
  if (replaced && replaced.length > 0 && replaced[0] !== 'NONE') opts.onEvent({ type: 'output', text: `Note: overriding previous HEALTHCHECK: [${replaced.join(' ')}]\n` });
  const r = await resolveStep(run, state, parent, step);
  identities.push(`${parent ?? ''}|${(r.containerConfig.Cmd ?? []).join(' ')}`);
  // The last build of this step: what a miss is explained against, and what a COPY may link from.
  const explain = async (): Promise<{ reason: string; reasons: string[]; previous?: PreviousCopy }> => {
    if (opts.noCache) return { reason: 'no-cache requested', reasons: ['no-cache requested'] };
    const prev = (await readStepHistory(opts.layout, identities[0]!)) ?? (await readStepHistory(opts.layout, identities[1]!));
    const prevPre = prev ? (JSON.parse(prev.preimage) as Preimage) : undefined;
    const copy = opts.storageDriver !== 'vfs' ? previousCopy(opts.layout, prev, prevPre, r.preimage) : undefined;
    const ctx = { firstInStage: pos.firstInStage, ...(track.lastMiss !== undefined ? { parentRebuiltStep: track.lastMiss } : {}), ...(track.relinked !== undefined ? { parentRelinkedStep: track.relinked } : {}) };
    return { reason: explainMiss(prevPre, r.preimage, ctx), reasons: missReasons(prevPre, r.preimage, ctx), ...(copy ? { previous: copy } : {}) };
  };
  if (opts.plan) return predictStep(run, state, track, parent, step, pos, { ...r, identities, explain });
  const claim = await claimStep(opts, { key: r.key, text: r.text, parent, n: pos.n });
  if (claim.kind === 'hit') {
    // A --link hit on another parent is re-stacked on this one (record.imageId then names it).
    const moved = isLinkStep(step) && (await restackLinkLayer(run, { record: claim.record, parent, key: r.key, text: r.text, containerConfig: r.containerConfig, newConfig: r.newConfig, track, n: pos.n }));
    state.config = r.newConfig;
    await recordHit(run, pos, step.text, claim.record.imageId, claim.record.durationMs, 'local', moved ? 'COPY --link: its layer, unchanged, stacked on the new parent' : undefined);
    return claim.record.imageId;
  }
  let recorded: Promise<void> | undefined;
  try {
    if (claim.kind === 'remote') {
      state.config = r.newConfig;
      await recordCache(opts.layout, { key: r.key as CacheKey, preimage: r.text, imageId: claim.id, created: new Date().toISOString(), durationMs: claim.durationMs });
      await recordHit(run, pos, step.text, claim.id, claim.durationMs, opts.remote?.source ?? 'remote');
      return claim.id;
    }
    const built = await runAndCommit(run, state, track, parent, step, pos, { ...r, identities, ...(await explain()) });
    recorded = built.recorded;
    return built.id;
  } finally {
    // A built step's lease outlives its records (a waiter then finds the hit); the build awaits
    // both before it settles, and fails if the records failed.
    if (recorded) run.cleanups.push(settleThenRelease(recorded, claim.release));
    else await claim.release();
  }
}

/** `recorded`, then the lease released whatever happened; rejects as `recorded` did. */
function settleThenRelease(recorded: Promise<void>, release: () => Promise<void>): Promise<void> {
  const done = recorded.finally(release);
  done.catch(() => undefined); // the build's settling reads it: not an unhandled rejection before
  return done;
}
