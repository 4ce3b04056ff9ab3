/** What a build reports while it runs; cli/ and api/ render these, the scheduler never prints. */
export type BuildEvent =
  | { type: 'warning'; text: string }
  | { type: 'not-reproducible'; n: number; text: string }
  | { type: 'step'; n: number; total: number; text: string }
  | { type: 'base'; id: string }
  | { type: 'triggers'; count: number }
  | { type: 'cache-hit'; n: number; source?: 'local' | 'remote' | 'cache-from'; note?: string }
  /** Another process on this store is building the same step: this build waits, then takes it from the cache. */
  | { type: 'lease-wait'; n: number; pid: number; host: string }
  | { type: 'running'; container: string }
  | { type: 'output'; text: string }
  | { type: 'removed'; container: string }
  | { type: 'image'; id: string }
  | { type: 'built'; id: string }
  | { type: 'tagged'; ref: string }
  | { type: 'cache-miss'; reason: string }
  | { type: 'predict'; n: number; hit: boolean; reason?: string; estimateMs?: number }
  | { type: 'summary'; hits: number; steps: number; savedMs: number };

/** Renders events in the legacy builder's format (the seed's transcript). */
export function renderLegacy(e: BuildEvent): string {
  switch (e.type) {
    case 'warning': return `[WARNING]: ${e.text}\n`;
    case 'not-reproducible': return `warning: step ${e.n} is not reproducible (${e.text})\n`;
    case 'step': return `Step ${e.n}/${e.total} : ${e.text}\n`;
    case 'base': return ` ---> ${e.id.slice(0, 12)}\n`;
    case 'triggers': return `# Executing ${e.count} build trigger${e.count === 1 ? '' : 's'}\n`;
    case 'lease-wait': return ` ---> Waiting for process ${e.pid}${e.host ? ` on ${e.host}` : ''}, which is building this step\n`;
    case 'cache-hit': return e.source === 'remote' ? ' ---> Using cache\n ---> (from the farm\'s cache)\n' : ` ---> Using cache\n${e.note ? ` ---> (${e.note})\n` : ''}`;
    case 'running': return ` ---> Running in ${e.container.slice(0, 12)}\n`;
    case 'output': return e.text;
    case 'removed': return `Removing intermediate container ${e.container.slice(0, 12)}\n`;
    case 'image': return ` ---> ${e.id.slice(0, 12)}\n`;
    case 'built': return `Successfully built ${e.id.slice(0, 12)}\n`;
    case 'tagged': return `Successfully tagged ${e.ref}\n`;
    case 'cache-miss': return ` ---> Cache miss: ${e.reason}\n`;
    case 'predict': {
      const est = e.estimateMs !== undefined ? `, est. ${(e.estimateMs / 1000).toFixed(1)} s` : '';
      return e.hit ? ' ---> Plan: hit (Using cache)\n' : ` ---> Plan: miss: ${e.reason ?? 'unknown'}${est}\n`;
    }
    case 'summary': {
      const pct = e.steps ? Math.round((100 * e.hits) / e.steps) : 100;
      return `Cache: ${e.hits}/${e.steps} steps (${pct} %), ${(e.savedMs / 1000).toFixed(1)} s saved\n`;
    }
  }
}
