import type { CacheKey, StoreLayout } from '../store/layout.js';
import { acquireLease, type HeldLease, type LeaseOwnerJson } from '../store/lease.js';
import { lookupCache } from './cache-index.js';

/**
 * The store's build lease of one step, the local counterpart of the farm's Redis lease
 * (`RemoteCache.lease`, same answer): resolves to a lease to release once the step is
 * committed (or failed), or to `{ built: true }` when another process on this store built the
 * step while we waited, so it is now a cache hit. Builds in separate processes on one store
 * thus run an identical step once; the others wait and take it from the cache.
 */
export async function leaseStep(
  layout: StoreLayout, key: CacheKey, preimage: string,
  opts: { signal?: AbortSignal; onWait?: (owner: LeaseOwnerJson) => void } = {},
): Promise<HeldLease | { built: true }> {
  const got = await acquireLease(layout.stepLease(key), {
    isDone: async () => (await lookupCache(layout, key, preimage)) !== undefined,
    ...(opts.signal ? { signal: opts.signal } : {}),
    ...(opts.onWait ? { onWait: opts.onWait } : {}),
  });
  return 'done' in got ? { built: true } : got;
}
