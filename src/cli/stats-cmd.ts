import { parseArgs } from 'node:util';
import { SlipwayError } from '../errors.js';
import { readBuildRecords } from '../cache/history.js';
import { computeStats } from '../cache/stats.js';
import { formatReference, parseReference } from '../store/reference.js';
import { table } from './format.js';
import type { CommandEnv } from './command-env.js';

/** `--since 24h|7d|30m` or an ISO date -> epoch ms. */
export function parseSince(s: string, now = Date.now()): number {
  const m = /^(\d+(?:\.\d+)?)(s|m|h|d)$/.exec(s);
  if (m) return now - Number(m[1]) * { s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7 }[m[2] as 's' | 'm' | 'h' | 'd'];
  const t = Date.parse(s);
  if (Number.isNaN(t)) throw new SlipwayError('ERR_USAGE', `invalid --since ${JSON.stringify(s)}: use 30m, 24h, 7d or a date`);
  return t;
}

/** `slipway stats`: hit rate per build and per tag, time saved, top cache breakers. */
export async function statsCommand(args: string[], { layout }: CommandEnv): Promise<number> {
  const { values } = parseArgs({ args, options: { tag: { type: 'string' }, since: { type: 'string' }, format: { type: 'string' } } });
  let records = await readBuildRecords(layout);
  if (values.since !== undefined) {
    const since = parseSince(values.since);
    records = records.filter((r) => Date.parse(r.started) >= since);
  }
  if (values.tag !== undefined) {
    const want = formatReference(parseReference(values.tag));
    records = records.filter((r) => r.tags.includes(want));
  }
  const st = computeStats(records);
  if (values.format === 'json') {
    process.stdout.write(`${JSON.stringify(st)}\n`);
    return 0;
  }
  if (values.format !== undefined) throw new SlipwayError('ERR_USAGE', `unsupported --format ${values.format} (use json)`);
  const pct = (r: number) => `${Math.round(r * 100)} %`;
  const sec = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  process.stdout.write(`Builds: ${st.total.builds}, cache hits ${st.total.hits}/${st.total.steps} steps (${pct(st.total.hitRate)}), ${sec(st.total.savedMs)} saved\n\n`);
  process.stdout.write(table([['BUILD', 'STARTED', 'TAGS', 'HITS', 'HIT RATE', 'SAVED', 'TIME', 'RESULT'],
    ...st.builds.map((b) => [b.id, b.started, b.tags.join(',') || '<none>', `${b.hits}/${b.steps}`, pct(b.hitRate), sec(b.savedMs), sec(b.durationMs), b.result])]));
  process.stdout.write('\n');
  process.stdout.write(table([['TAG', 'BUILDS', 'HITS', 'HIT RATE', 'SAVED'], ...st.tags.map((t) => [t.tag, String(t.builds), `${t.hits}/${t.steps}`, pct(t.hitRate), sec(t.savedMs)])]));
  if (st.breakers.length) {
    process.stdout.write('\nTop cache breakers:\n');
    process.stdout.write(table([['INPUT', 'MISSES'], ...st.breakers.map((b) => [b.input, String(b.misses)])]));
  }
  return 0;
}
