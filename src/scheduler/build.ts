import fs from 'node:fs/promises';
import path from 'node:path';
import { SlipwayError } from '../errors.js';
import { parsedDockerfile } from '../cache/parsed-dockerfile.js';
import { planBuild } from '../dockerfile/plan.js';
import type { ImageId } from '../store/layout.js';
import { ensureStore, sweepTmp } from '../store/graph.js';
import { readRepositories, updateRepositories } from '../store/repositories.js';
import { parseReference, formatReference } from '../store/reference.js';
import { newBuildId } from '../cache/history.js';
import { clearRunning } from '../cache/prune.js';
import { loadContext } from '../context/load.js';
import { OrderedOutput } from './ordered-output.js';
import { outlineOf } from './progress-tap.js';
import { refreshBases } from './refresh-bases.js';
import { baseOf, buildStage, validateFromFlags } from './stage.js';
import { recordBuild, summarize } from './recorder.js';
import type { BuildOptions, BuildRun, StageResult } from './run-types.js';

export type { BuildOptions, StepExecutor } from './run-types.js';

/** Reads the Dockerfile `opts` names; Docker's message when it is not there. */
async function readDockerfile(opts: BuildOptions): Promise<{ path: string; text: string }> {
  const file = path.resolve(opts.contextDir, opts.dockerfile ?? 'Dockerfile');
  try {
    return { path: file, text: await fs.readFile(file, 'utf8') };
  } catch {
    throw new SlipwayError('ERR_FILE_NOT_FOUND', `Cannot locate specified Dockerfile: ${opts.dockerfile ?? 'Dockerfile'}`);
  }
}

/**
 * Builds a Dockerfile: parse and plan (pure; a bad Dockerfile fails here, before the store
 * is touched), then each stage's steps in order. A step is looked up in the cache by its key;
 * a miss runs in `opts.executor` (RUN/COPY/ADD/WORKDIR) or in memory (metadata), and is
 * committed atomically as a new image whose parent is the previous step.
 */
export async function build(opts: BuildOptions): Promise<{ id: ImageId }> {
  const dockerfile = await readDockerfile(opts);
  const parsed = await parsedDockerfile(opts.layout, dockerfile.text, path.basename(dockerfile.path));
  const df = parsed.df;
  const plan = planBuild(df, { buildArgs: opts.buildArgs ?? {}, target: opts.target });
  const tags = (opts.tags ?? []).map((t) => formatReference(parseReference(t)));
  validateFromFlags(plan);
  await refreshBases(plan, opts);
  // Every base image must exist before anything runs, so a typo in a later FROM fails cleanly.
  for (const stage of plan.stages) if (stage.baseStage === undefined && stage.base !== 'scratch') await baseOf({ opts, plan, stages: new Map() }, stage);
  await ensureStore(opts.layout);
  await sweepTmp(opts.layout);
  const context = await loadContext(opts.contextDir, opts.layout);
  for (const w of df.warnings) opts.onEvent({ type: 'warning', text: w });
  const run: BuildRun = { opts, plan, context, stages: new Map(), escape: df.escape, records: [], historyName: tags[0] ?? dockerfile.path, buildId: newBuildId(), inUse: new Set(), cleanups: [] };
  const started = new Date();
  for (const [i, a] of plan.globalArgs.entries()) opts.onEvent({ type: 'step', n: i + 1, total: plan.total, text: a.text });
  let last: StageResult;
  let settled: PromiseSettledResult<void>[] = [];
  try {
    last = await buildStages(run);
  } catch (e) {
    await recordBuild(run, { dockerfile: dockerfile.path, tags, started, result: 'failure', error: (e as Error).message });
    throw e;
  } finally {
    // Nothing of a step is left in graph/_tmp once the build has settled, failed or not, and
    // every built step's records are written and its lease released.
    settled = await Promise.allSettled(run.cleanups);
    if (!opts.plan) await clearRunning(opts.layout, run.buildId);
  }
  const unrecorded = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (unrecorded) {
    await recordBuild(run, { dockerfile: dockerfile.path, tags, started, result: 'failure', error: (unrecorded.reason as Error).message });
    throw unrecorded.reason;
  }
  if (opts.plan) {
    summarize(run);
    return { id: (last.id ?? '') as ImageId };
  }
  // A build that made no image (only `FROM scratch`) fails here and leaves the store as it was.
  if (!last.id) throw new SlipwayError('ERR_DOCKERFILE_NO_STAGE', 'No image was generated. Is your Dockerfile empty?', { bare: true });
  if (opts.persistStatCache !== false) await context.saveStatCache();
  await parsed.save();
  await recordBuild(run, { dockerfile: dockerfile.path, tags, started, result: 'success' });
  await tagBuilt(opts, last.id, tags);
  summarize(run);
  return { id: last.id };
}

/** Points the build's tags at its image. */
async function tagBuilt(opts: BuildOptions, id: ImageId, tags: string[]): Promise<void> {
  opts.onEvent({ type: 'built', id });
  if (tags.length === 0) return;
  const refs = tags.map(parseReference);
  // Tags that already name this image (a rebuild from the cache) are left as they are: no lock,
  // no rewrite. A concurrent retag after this read is as if it came after this build.
  const current = await readRepositories(opts.layout);
  if (refs.some((ref) => current.Repositories[ref.repository]?.[ref.tag] !== id)) {
    await updateRepositories(opts.layout, (r) => {
      for (const ref of refs) (r.Repositories[ref.repository] ??= {})[ref.tag] = id;
    });
  }
  for (const t of tags) opts.onEvent({ type: 'tagged', ref: t });
}

/**
 * Starts every stage at once; each awaits the stages it needs (its base, its COPY --from
 * sources), so independent stages run in parallel in the executor. The first failure cancels
 * the rest and is the build's error.
 */
async function buildStages(run: BuildRun): Promise<StageResult> {
  const { opts, plan } = run;
  opts.progress?.plan(outlineOf(plan), plan.total);
  const output = new OrderedOutput(plan.stages.map((s) => s.index), opts.onEvent, opts.progress);
  const inner = new AbortController();
  const onOuterAbort = () => inner.abort();
  opts.signal?.addEventListener('abort', onOuterAbort);
  let firstError: unknown;
  const all: Array<Promise<StageResult>> = [];
  for (const stage of plan.stages) {
    const stageRun: BuildRun = { ...run, currentStage: stage.index, opts: { ...opts, onEvent: output.channel(stage.index), signal: inner.signal } };
    const p = (async () => {
      let failed: unknown;
      try {
        return await buildStage(stageRun, stage);
      } catch (e) {
        failed = e;
        firstError ??= e;
        inner.abort();
        throw e;
      } finally {
        output.finish(stage.index, failed);
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
