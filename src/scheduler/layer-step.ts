import type { StageState } from '../dockerfile/metadata.js';
import type { CopyStep, RunStep, WorkdirStep } from '../dockerfile/step.js';
import type { LayerWork } from './layer-work.js';
import type { BuildRun } from './run-types.js';
import { prepareRun } from './resolve-run.js';
import { prepareWorkdir } from './resolve-workdir.js';
import { prepareCopy } from './resolve-copy.js';

export type { LayerWork } from './layer-work.js';

/** Prepares a file-changing step; all expansion and source selection happens here, in the main thread. */
export async function prepareLayerStep(run: BuildRun, state: StageState, step: RunStep | CopyStep | WorkdirStep, lowerDirs: string[]): Promise<LayerWork> {
  switch (step.kind) {
    case 'RUN': return prepareRun(run, state, step, lowerDirs);
    case 'WORKDIR': return prepareWorkdir(run, state, step, lowerDirs);
    case 'COPY':
    case 'ADD': return prepareCopy(run, state, step, lowerDirs);
  }
}

