import { SlipwayError } from '../errors.js';
import { cloneConfig, emptyContainerConfig, envGet, DEFAULT_PATH } from '../image-config.js';
import type { Plan, PlannedStage } from '../dockerfile/plan.js';
import type { StageState } from '../dockerfile/metadata.js';
import { readImage, resolveImage } from '../store/graph.js';
import type { ImageId } from '../store/layout.js';
import { executeStep } from './step.js';
import { useImage } from './recorder.js';
import type { BuildRun, StageResult, StageTrack, StepPosition } from './run-types.js';

/** `COPY --from=N` must name an earlier stage (Docker: "index out of bounds"). */
export function validateFromFlags(plan: Plan): void {
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

/** A stage's base: an earlier stage's result, scratch, or an image of the store (pulled by the farm when missing). */
export async function baseOf(run: Pick<BuildRun, 'opts' | 'plan' | 'stages'>, stage: PlannedStage): Promise<StageResult> {
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

/** The stage's starting state: the base's config, with Docker's default PATH, and its ONBUILD triggers taken out. */
function stageState(run: BuildRun, base: StageResult): { state: StageState; triggers: string[] } {
  const config = cloneConfig(base.config);
  // Docker's legacy builder gives every stage a PATH when the base has none.
  if (envGet(config.Env, 'PATH') === undefined) config.Env = [...(config.Env ?? []), DEFAULT_PATH];
  const triggers = config.OnBuild ?? [];
  config.OnBuild = null;
  const state: StageState = {
    config, args: new Map(), cmdSet: false, buildArgs: run.plan.buildArgs, globalArgs: run.plan.globalArgValues,
    file: run.plan.file, escape: run.escape,
  };
  return { state, triggers };
}

/** Builds one stage: its base, the base's ONBUILD triggers, then its steps in order. */
export async function buildStage(run: BuildRun, stage: PlannedStage): Promise<StageResult> {
  const { onEvent } = run.opts;
  onEvent({ type: 'step', n: stage.firstNumber, total: run.plan.total, text: stage.from.text });
  const base = await baseOf(run, stage);
  if (base.id) onEvent({ type: 'base', id: base.id });
  if (base.id && !run.opts.plan) await useImage(run, base.id);
  const { state, triggers } = stageState(run, base);
  const track: StageTrack = base.unknown ? { unknownFrom: base.unknown.step } : {};
  let cur: ImageId | null = base.id;
  let first = true;
  if (triggers.length > 0) {
    onEvent({ type: 'triggers', count: triggers.length });
    // The parser loads only for a base with ONBUILD triggers (a cached Dockerfile needs none).
    const { parseDockerfile } = await import('../dockerfile/parse.js');
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
