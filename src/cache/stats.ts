import type { BuildRecord } from './history.js';

/** Hit-rate statistics over build records. */
export interface CacheStats {
  builds: Array<{ id: string; started: string; tags: string[]; hits: number; steps: number; hitRate: number; savedMs: number; durationMs: number; result: string }>;
  tags: Array<{ tag: string; builds: number; hits: number; steps: number; hitRate: number; savedMs: number }>;
  total: { builds: number; hits: number; steps: number; hitRate: number; savedMs: number };
  breakers: Array<{ input: string; misses: number }>;
}

/**
 * The input a miss reason names, without the values: `content of src/app.ts changed` ->
 * `content of src/app.ts`, `ARG VERSION changed (1 → 2)` -> `ARG VERSION`. Misses that only
 * follow from an earlier miss (parent rebuilt) or a first build name no input.
 */
export function breakerOf(reason: string): string[] {
  if (/^(parent rebuilt|no earlier build|no-cache requested)/.test(reason)) return [];
  return reason
    .replace(/ \(\+\d+ more\)$/, '')
    .split('; ')
    .map((r) => r.replace(/^(COPY|ADD): /, '').replace(/ \([^)]*\)$/, '').replace(/ (changed|added|removed)( .*)?$/, '').replace(/ renamed to .*$/, ' (renamed)'))
    .filter((r) => r !== '');
}

const rate = (h: number, n: number) => (n === 0 ? 1 : h / n);

/** Aggregates build records (already filtered by the caller). */
export function computeStats(records: BuildRecord[]): CacheStats {
  const builds = records.map((b) => {
    const hits = b.steps.filter((s) => s.hit).length;
    const savedMs = b.steps.reduce((a, s) => a + s.savedMs, 0);
    return { id: b.id, started: b.started, tags: b.tags, hits, steps: b.steps.length, hitRate: rate(hits, b.steps.length), savedMs, durationMs: b.durationMs, result: b.result };
  });
  const byTag = new Map<string, { builds: number; hits: number; steps: number; savedMs: number }>();
  for (const b of builds) {
    for (const t of b.tags.length ? b.tags : ['<none>']) {
      const e = byTag.get(t) ?? { builds: 0, hits: 0, steps: 0, savedMs: 0 };
      e.builds++;
      e.hits += b.hits;
      e.steps += b.steps;
      e.savedMs += b.savedMs;
      byTag.set(t, e);
    }
  }
  const counts = new Map<string, number>();
  for (const b of records) {
    for (const s of b.steps) {
      if (s.hit) continue;
      const keys = new Set((s.reasons ?? (s.reason ? [s.reason] : [])).flatMap(breakerOf));
      for (const k of keys) counts.set(k, (counts.get(k) ?? 0) + 1);
    }
  }
  const hits = builds.reduce((a, b) => a + b.hits, 0);
  const steps = builds.reduce((a, b) => a + b.steps, 0);
  return {
    builds,
    tags: [...byTag].map(([tag, e]) => ({ tag, ...e, hitRate: rate(e.hits, e.steps) })).sort((a, b) => a.tag.localeCompare(b.tag)),
    total: { builds: builds.length, hits, steps, hitRate: rate(hits, steps), savedMs: builds.reduce((a, b) => a + b.savedMs, 0) },
    breakers: [...counts].map(([input, misses]) => ({ input, misses })).sort((a, b) => b.misses - a.misses || a.input.localeCompare(b.input)).slice(0, 10),
  };
}
