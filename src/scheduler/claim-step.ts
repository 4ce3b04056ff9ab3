import os from 'node:os';
import { lookupCache, type CacheRecord } from '../cache/cache-index.js';
import { leaseStep } from '../cache/step-lease.js';
import type { CacheKey, ImageId } from '../store/layout.js';
import type { BuildOptions } from './run-types.js';

/**
 * What a build does with one step after its key is known: take it from the local cache, take it
 * from the farm's cache, or build it. `release` ends the leases that make this process the only
 * one building (or importing) the step; call it once the outcome is committed, or failed.
 */
export type StepClaim =
  | { kind: 'hit'; record: CacheRecord }
  | { kind: 'remote'; id: ImageId; durationMs: number; release(): Promise<void> }
  | { kind: 'build'; release(): Promise<void> };

const nothing = async (): Promise<void> => undefined;

/**
 * Claims a step. A local hit needs nothing more. Otherwise the store's lease for the key is
 * taken first: another process on this store building the same step makes us wait, and its
 * result is then a hit (`---> Using cache`), so N identical builds run the step once. Holding
 * it, the farm's shared cache is asked (and its lease taken) when there is one.
 * `--no-cache` claims nothing: it builds again whatever others do.
 */
export async function claimStep(opts: BuildOptions, a: { key: string; text: string; parent: ImageId | null; n: number }): Promise<StepClaim> {
  if (opts.noCache) return { kind: 'build', release: nothing };
  const key = a.key as CacheKey;
  const hit = await lookupCache(opts.layout, key, a.text);
  if (hit) return { kind: 'hit', record: hit };
  const local = await leaseStep(opts.layout, key, a.text, {
    ...(opts.signal ? { signal: opts.signal } : {}),
    onWait: (owner) => opts.onEvent({ type: 'lease-wait', n: a.n, pid: owner.pid, host: owner.host === os.hostname() ? '' : owner.host }),
  });
  if ('built' in local) {
    const record = await lookupCache(opts.layout, key, a.text);
    // Gone again already (pruned): build it, unguarded, rather than wait a second time.
    return record ? { kind: 'hit', record } : { kind: 'build', release: nothing };
  }
  if (!opts.remote) return { kind: 'build', release: () => local.release() };
  try {
    // The farm: a step another worker built is fetched; one being built elsewhere is waited for.
    for (;;) {
      const remote = await opts.remote.fetch(a.text, a.parent, a.key);
      if (remote) return { kind: 'remote', id: remote.id, durationMs: remote.durationMs, release: () => local.release() };
      const l = await opts.remote.lease(a.text);
      if ('release' in l) {
        return { kind: 'build', release: async () => { await l.release(); await local.release(); } };
      }
    }
  } catch (e) {
    await local.release();
    throw e;
  }
}
