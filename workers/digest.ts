/** Piscina entry point: content digests of COPY/ADD sources (see src/cache/context-digest.ts). */
import { digestSources, type SourceSpec, type StatCache } from '../src/cache/context-digest.js';

export default async function digest(task: { sources: SourceSpec[]; ignored: string[]; implied: string[]; statCache: StatCache }) {
  const ignored = new Set(task.ignored);
  const implied = new Set(task.implied);
  const result = await digestSources(task.sources, (rel) => ignored.has(rel), task.statCache, { isImplied: (rel) => implied.has(rel) });
  return { ...result, statCache: task.statCache };
}
