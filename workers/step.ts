/**
 * Piscina entry point: one uncached RUN/COPY/ADD/WORKDIR step (see src/snapshot/run-step.ts).
 * `cancel`, when the build can be cancelled, is a port on which the pool says so: the step then
 * stops as a step on the pool's own thread does (its container killed, its folder removed).
 */
import type { MessagePort } from 'node:worker_threads';
import { runStep, type StepResult, type StepTask } from '../src/snapshot/run-step.js';

export default async function step(task: StepTask & { cancel?: MessagePort }): Promise<StepResult> {
  const { cancel, ...rest } = task;
  if (!cancel) return runStep(rest);
  const abort = new AbortController();
  cancel.once('message', () => abort.abort());
  try {
    return await runStep(rest, abort.signal);
  } finally {
    cancel.close();
  }
}
