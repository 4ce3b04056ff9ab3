import { parseArgs } from 'node:util';
import { SlipwayError } from '../errors.js';
import { pruneCache } from '../cache/prune.js';
import { shortId } from '../store/layout.js';
import { humanSize } from './format.js';
import { parseSince } from './stats-cmd.js';
import type { CommandEnv } from './command-env.js';

/** `10GB`, `512MB`, `1.5G`, `2048` (bytes) -> bytes (decimal units, as Docker's). */
export function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(b|k|kb|m|mb|g|gb|t|tb)?$/i.exec(s.trim());
  if (!m) throw new SlipwayError('ERR_USAGE', `invalid size ${JSON.stringify(s)}: use e.g. 500MB, 10GB`);
  const unit = (m[2] ?? 'b').toLowerCase()[0] as 'b' | 'k' | 'm' | 'g' | 't';
  return Math.floor(Number(m[1]) * { b: 1, k: 1e3, m: 1e6, g: 1e9, t: 1e12 }[unit]);
}

/** `slipway prune`: removes unreferenced cache images, least worth keeping first. */
export async function pruneCommand(args: string[], { layout }: CommandEnv): Promise<number> {
  const { values } = parseArgs({ args, options: { 'keep-storage': { type: 'string' }, 'keep-duration': { type: 'string' }, 'dry-run': { type: 'boolean' } } });
  const keepDurationMs = values['keep-duration'] !== undefined ? Date.now() - parseSince(values['keep-duration']) : undefined;
  const r = await pruneCache(layout, {
    ...(values['keep-storage'] !== undefined ? { keepStorage: parseSize(values['keep-storage']) } : {}),
    ...(keepDurationMs !== undefined ? { keepDurationMs } : {}),
    dryRun: values['dry-run'] ?? false,
  });
  for (const x of r.removed) process.stdout.write(`${values['dry-run'] ? 'Would delete' : 'Deleted'}: sha256:${x.id} (${humanSize(x.bytes)})\n`);
  process.stdout.write(`Total reclaimed space: ${humanSize(r.reclaimedBytes)} (store ${humanSize(r.before)} -> ${humanSize(r.after)}; ${humanSize(r.pinnedBytes)} held by tagged images and running builds)\n`);
  if (values['keep-storage'] !== undefined && r.after > parseSize(values['keep-storage'])) {
    process.stderr.write(`warning: the store is still over the cap: what remains is referenced by tags or running builds (${r.removed.length ? shortId(r.removed[0]!.id) : 'nothing'} removed first)\n`);
  }
  return 0;
}
