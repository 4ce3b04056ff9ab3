/** Piscina entry point: content digests of COPY/ADD sources (see src/cache/context-digest.ts). */
import { digestSources, type SourceSpec, type StatCache } from '../src/cache/context-digest.js';

export default async function digest(task: { sources: SourceSpec[]; ignored: string[]; statCache: StatCache }) {
  const ignored = new Set(task.ignored);
  const result = await digestSources(task.sources, (rel) => ignored.has(rel), task.statCache);
  return { ...result, statCache: task.statCache };
}
