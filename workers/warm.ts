/** Piscina entry point: readies a resident engine's thread before its first step (see src/sandbox/container.ts). */
import { prewarmThread } from '../src/sandbox/container.js';

export default async function warm(task: { domain: string }): Promise<void> {
  await prewarmThread(task.domain);
}
