import type { ContainerConfigJson } from '../image-config.js';
import { applyMetadata, isMetadataStep, type StageState } from '../dockerfile/metadata.js';
import type { Step } from '../dockerfile/step.js';
import type { CacheKey, ImageId } from '../store/layout.js';
import { lookupCache } from '../cache/cache-index.js';
import { readStepHistory } from '../cache/history.js';
import { recordPrediction } from './recorder.js';
import type { BuildRun, StageTrack, StepPosition } from './run-types.js';

/**
 * --plan past a predicted miss: the parent id is unknown, so this step rebuilds too; only its
 * config effect is applied, so later steps' keys are still computed from the right config.
 */
export async function predictPastMiss(run: BuildRun, state: StageState, track: StageTrack, parent: ImageId | null, step: Step, pos: StepPosition, identity: string): Promise<ImageId> {
  if (isMetadataStep(step)) state.config = applyMetadata(step, state).config;
  const hist = await readStepHistory(run.opts.layout, identity);
  run.opts.onEvent({ type: 'predict', n: pos.n, hit: false, reason: `parent rebuilt (step ${track.unknownFrom})`, ...(hist ? { estimateMs: hist.durationMs } : {}) });
  recordPrediction(run, pos, step.text, { reason: 'parent rebuilt' });
  return (parent ?? '') as ImageId;
}

/** --plan: predicts the step from the cache and its history; runs and writes nothing. */
export async function predictStep(
  run: BuildRun, state: StageState, track: StageTrack, parent: ImageId | null, step: Step, pos: StepPosition,
  p: { key: string; text: string; identities: string[]; newConfig: ContainerConfigJson; explain: () => Promise<{ reason: string }> },
): Promise<ImageId> {
  const { opts } = run;
  const hit = opts.noCache ? undefined : await lookupCache(opts.layout, p.key as CacheKey, p.text);
  const reason = hit ? undefined : (await p.explain()).reason;
  const hist = await readStepHistory(opts.layout, p.identities[0]!);
  opts.onEvent({ type: 'predict', n: pos.n, hit: !!hit, ...(reason ? { reason } : {}), ...(hit ? { estimateMs: 0 } : hist ? { estimateMs: hist.durationMs } : {}) });
  recordPrediction(run, pos, step.text, { ...(hit ? { hit } : {}), ...(reason ? { reason } : {}) });
  state.config = p.newConfig;
  if (hit) return hit.imageId;
  track.unknownFrom = pos.n;
  return (parent ?? '') as ImageId;
}
