import { writeBuildRecord, type StepRecord } from '../cache/history.js';
import { markRunning } from '../cache/prune.js';
import { readLayerSize } from '../store/graph.js';
import type { ImageId } from '../store/layout.js';
import type { BuildRun, StepPosition } from './run-types.js';

/** Records that this build stands on `id` (prune keeps it and its parents while the build runs). */
export async function useImage(run: BuildRun, id: string): Promise<void> {
  if (run.inUse.has(id)) return;
  run.inUse.add(id);
  await markRunning(run.opts.layout, run.buildId, id);
}

/** A step taken from a cache (`---> Using cache`), local or the farm's. */
export async function recordHit(run: BuildRun, pos: StepPosition, text: string, id: ImageId, savedMs: number, source: 'local' | 'remote' | 'cache-from', note?: string): Promise<void> {
  await useImage(run, id);
  run.opts.onEvent({ type: 'cache-hit', n: pos.n, ...(source === 'local' ? {} : { source }), ...(note ? { note } : {}) });
  const bytes = await readLayerSize(run.opts.layout, id).catch(() => 0);
  // Stats count a --cache-from hit as one from beyond the local cache.
  run.records.push({ n: pos.n, stage: pos.stage, text, hit: true, source: source === 'cache-from' ? 'remote' : source, durationMs: 0, bytes, savedMs, imageId: id });
}

/** A step built here. */
export function recordMiss(run: BuildRun, pos: StepPosition, text: string, r: { reason: string; reasons: string[]; durationMs: number; bytes: number; id: ImageId }): void {
  run.records.push({ n: pos.n, stage: pos.stage, text, hit: false, reason: r.reason, reasons: r.reasons, source: 'local', durationMs: r.durationMs, bytes: r.bytes, savedMs: 0, imageId: r.id });
}

/** A step --plan predicted (nothing ran). */
export function recordPrediction(run: BuildRun, pos: StepPosition, text: string, p: { hit?: { imageId: string; durationMs: number }; reason?: string }): void {
  run.records.push({
    n: pos.n, stage: pos.stage, text, hit: !!p.hit, ...(p.reason ? { reason: p.reason } : {}), source: 'local',
    durationMs: 0, bytes: 0, savedMs: p.hit?.durationMs ?? 0, imageId: p.hit?.imageId ?? '',
  });
}

/** The closing line: `Cache: 7/9 steps (78 %), 41.2 s saved`. */
export function summarize(run: BuildRun): void {
  const steps = run.records.length;
  const hits = run.records.filter((r) => r.hit).length;
  const savedMs = run.records.reduce((a, r) => a + r.savedMs, 0);
  run.opts.onEvent({ type: 'summary', hits, steps, savedMs });
}

/** The build's own record for `stats` (not written by --plan); failing to write it never fails a build. */
export async function recordBuild(run: BuildRun, a: { dockerfile: string; tags: string[]; started: Date; result: 'success' | 'failure'; error?: string }): Promise<void> {
  if (run.opts.plan) return;
  await writeBuildRecord(run.opts.layout, {
    id: run.buildId, tags: a.tags, dockerfile: a.dockerfile, started: a.started.toISOString(), durationMs: Date.now() - a.started.getTime(),
    result: a.result, ...(a.error ? { error: a.error } : {}), steps: run.records,
  }).catch(() => undefined);
}

export type { StepRecord };
