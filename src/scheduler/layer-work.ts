import type { ContainerConfigJson } from '../image-config.js';
import type { StepResult } from '../snapshot/run-step.js';
import type { FinishOptions } from '../snapshot/finish-layer.js';
import type { BuildRun } from './run-types.js';
import type { PreviousCopy } from './previous-copy.js';

/** A prepared RUN/COPY/ADD/WORKDIR: its history Cmd, its key inputs and how to execute it. */
export interface LayerWork {
  /** Config after the step. */
  config: ContainerConfigJson;
  /** Config the step runs with (container_config without Cmd), when it differs from `config`. */
  runConfig?: ContainerConfigJson;
  cmd: string[];
  keyExtra: unknown;
  displayCmd: string;
  /** The container id a RUN runs as (its first 12 hex are the step's hostname, as in Docker). */
  container?: string;
  /** `previous`: the last build of this step, given to a COPY whose unchanged files it may link. */
  execute: (onOutput: (text: string) => void, previous?: PreviousCopy) => Promise<StepResult>;
}

/** How every step's new layer is finished: SOURCE_DATE_EPOCH, and its tar kept when the farm will publish it. */
export function finishOptions(run: BuildRun): FinishOptions {
  return { ...(run.opts.sourceDateEpoch !== undefined ? { clampMtime: run.opts.sourceDateEpoch } : {}), ...(run.opts.remote ? { keepTar: true } : {}) };
}
