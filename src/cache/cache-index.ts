import fs from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import type { CacheKey, ImageId, StoreLayout } from '../store/layout.js';
import { hasImage } from '../store/graph.js';
import { writeFileAtomic } from '../fs.js';

/** One cache record: the key's preimage and the image the step produced. */
export interface CacheRecord {
  key: CacheKey;
  preimage: string;
  imageId: ImageId;
  created: string;
  durationMs: number;
  /** The layer's diff id, to notice a key that does not reproduce. */
  diffId?: string;
}

/**
 * Looks a step up in the local cache. xxh64 is not collision-resistant, so a hit also needs
 * the stored preimage to equal this step's, and the image to still exist.
 */
export async function lookupCache(layout: StoreLayout, key: CacheKey, preimage: string): Promise<CacheRecord | undefined> {
  let records: CacheRecord[];
  try {
    // A small file read in place: a warm build looks one up per step, and four thread-pool round
    // trips per read were most of such a build's time in the engine.
    records = JSON.parse(readFileSync(layout.cacheEntry(key), 'utf8')) as CacheRecord[];
  } catch {
    return undefined;
  }
  for (const r of records) {
    if (r.preimage === preimage && (await hasImage(layout, r.imageId))) return r;
  }
  return undefined;
}

/** Every record stored under a key (colliding or re-executed preimages). */
export async function cacheRecords(layout: StoreLayout, key: CacheKey): Promise<CacheRecord[]> {
  try {
    return JSON.parse(await fs.readFile(layout.cacheEntry(key), 'utf8')) as CacheRecord[];
  } catch {
    return [];
  }
}

/** Records a step's result (atomic replace of the key's file; colliding preimages coexist). */
export async function recordCache(layout: StoreLayout, rec: CacheRecord): Promise<void> {
  const file = layout.cacheEntry(rec.key);
  let records: CacheRecord[] = [];
  try {
    records = JSON.parse(await fs.readFile(file, 'utf8')) as CacheRecord[];
  } catch {
    records = [];
  }
  // Keep the newest record per preimage; a preimage executed again replaces the older one.
  records = records.filter((r) => r.preimage !== rec.preimage);
  records.push(rec);
  await writeFileAtomic(file, JSON.stringify(records), 0o644, { fsync: false });
}
