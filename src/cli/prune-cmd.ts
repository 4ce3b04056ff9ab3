import { parseArgs } from 'node:util';
import { SlipwayError } from '../errors.js';
import { pruneCache } from '../cache/prune.js';
import { listCacheMounts, pruneCacheMounts } from '../store/cache-mounts.js';
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
  const cap = values['keep-storage'] !== undefined ? parseSize(values['keep-storage']) : undefined;
  // Cache mounts count against the cap: images go first (down to what the mounts leave), then
  // the mounts no build uses, least recently used first.
  const mountBytes = (await listCacheMounts(layout)).reduce((a, m) => a + m.bytes, 0);
  const r = await pruneCache(layout, {
    ...(cap !== undefined ? { keepStorage: Math.max(0, cap - mountBytes) } : {}),
    ...(keepDurationMs !== undefined ? { keepDurationMs } : {}),
    dryRun: values['dry-run'] ?? false,
  });
  const m = await pruneCacheMounts(layout, {
    ...(cap !== undefined ? { budget: Math.max(0, cap - r.after) } : {}),
    ...(keepDurationMs !== undefined ? { keepDurationMs } : {}),
    dryRun: values['dry-run'] ?? false,
  });
  const verb = values['dry-run'] ? 'Would delete' : 'Deleted';
  for (const x of r.removed) process.stdout.write(`${verb}: sha256:${x.id} (${humanSize(x.bytes)})\n`);
  for (const x of m.removed) process.stdout.write(`${verb} cache mount: ${x.tenant}/${x.id}${x.instance ? ` (copy ${x.instance})` : ''} (${humanSize(x.bytes)})\n`);
  const after = r.after + m.remainingBytes;
  process.stdout.write(`Total reclaimed space: ${humanSize(r.reclaimedBytes + m.reclaimedBytes)} (store ${humanSize(r.before + mountBytes)} -> ${humanSize(after)}; ${humanSize(r.pinnedBytes)} held by tagged images and running builds)\n`);
  if (cap !== undefined && after > cap) {
    process.stderr.write(`warning: the store is still over the cap: what remains is referenced by tags or running builds (${r.removed.length ? shortId(r.removed[0]!.id) : 'nothing'} removed first)\n`);
  }
  return 0;
}
