import type { Plan } from '../dockerfile/plan.js';
import type { BuildEvent } from './progress.js';

/** One stage as the live views name it: `[name k/count]`. */
export interface StageOutline {
  index: number;
  /** The stage's `AS` name, if any. */
  name: string | undefined;
  /** `Step N/M` number of its FROM; its k-th step (FROM is 1) is number firstNumber + k - 1. */
  firstNumber: number;
  /** Steps of the stage, its FROM included. */
  count: number;
}

/**
 * A live tap on a build for views that show parallel stages as they run (`--progress=tty`,
 * `plain`, `rawjson`). Unlike `onEvent`, whose stream is held back per stage so that it reads
 * as the legacy builder's sequential output, the tap sees every stage's events the moment they
 * happen, tagged with their stage.
 */
export interface ProgressTap {
  /** Once, after planning, before any stage starts. */
  plan(stages: StageOutline[], total: number): void;
  /** One event of one stage, as it happens. */
  event(stage: number, e: BuildEvent): void;
  /** A stage's last event: it finished, failed (`error`) or was cancelled. */
  stageEnd(stage: number, error?: { message: string; cancelled: boolean }): void;
}

/** The stages of a plan as the tap names them. */
export function outlineOf(plan: Plan): StageOutline[] {
  return plan.stages.map((s) => ({ index: s.index, name: s.name, firstNumber: s.firstNumber, count: s.steps.length + 1 }));
}
