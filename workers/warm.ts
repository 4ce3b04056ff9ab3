/** Piscina entry point: readies a resident engine's thread before its first step (see src/sandbox/container.ts). */
import { prewarmThread } from '../src/sandbox/container.js';

export default async function warm(task: { domain: string }): Promise<void> {
  await prewarmThread(task.domain);
  // What a COPY, ADD or WORKDIR step loads on first use (run-step.ts imports it lazily, so that a
  // one-shot build of RUN steps never does): ~17 ms of a resident engine's first such step.
  await import('../src/snapshot/copy-in-root.js');
}
