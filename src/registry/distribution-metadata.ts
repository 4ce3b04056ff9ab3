import fs from 'node:fs/promises';
import type { StoreLayout } from '../store/layout.js';
import { readJsonIfExists, withLock, writeFileAtomic } from '../fs.js';
import { isDigest } from './manifest.js';

/**
 * Docker's `v2metadata-by-diffid` entry: a layer (named by its diff id) is known to a registry
 * repository as this compressed blob. Push uses it to skip compressing and uploading a layer the
 * registry already holds, and to mount it from another repository of the same registry.
 */
export interface V2MetadataJson {
  Digest: string;
  /** `HOST/PATH`, e.g. `127.0.0.1:5000/thoward/scooby_snacks`. */
  SourceRepository: string;
  Size?: number;
  MediaType?: string;
}

const MAX_ENTRIES = 50;

/** What is known of a diff id's compressed forms, newest first. */
export async function readV2Metadata(layout: StoreLayout, diffId: string): Promise<V2MetadataJson[]> {
  if (!isDigest(diffId)) return [];
  const list = await readJsonIfExists<unknown>(layout.v2MetadataByDiffId(diffId)).catch(() => undefined);
  if (!Array.isArray(list)) return [];
  return list.filter((e): e is V2MetadataJson => !!e && typeof e === 'object' && isDigest((e as V2MetadataJson).Digest) && typeof (e as V2MetadataJson).SourceRepository === 'string');
}

/** The diff id a compressed blob unpacks to, when known. */
export async function readDiffIdByDigest(layout: StoreLayout, digest: string): Promise<string | undefined> {
  if (!isDigest(digest)) return undefined;
  const text = await fs.readFile(layout.diffIdByDigest(digest), 'utf8').catch(() => undefined);
  return text !== undefined && isDigest(text.trim()) ? text.trim() : undefined;
}

/**
 * Records that `diffId` is the blob `entry.Digest` in `entry.SourceRepository` (after a push,
 * mount or pull). Both indexes are rewritten atomically under one lock.
 */
export async function recordV2Metadata(layout: StoreLayout, diffId: string, entry: V2MetadataJson): Promise<void> {
  if (!isDigest(diffId) || !isDigest(entry.Digest)) return;
  await withLock(layout.lock('distribution'), async () => {
    const list = (await readV2Metadata(layout, diffId)).filter((e) => !(e.Digest === entry.Digest && e.SourceRepository === entry.SourceRepository));
    list.unshift(entry);
    await writeFileAtomic(layout.v2MetadataByDiffId(diffId), JSON.stringify(list.slice(0, MAX_ENTRIES)), 0o600);
    if ((await readDiffIdByDigest(layout, entry.Digest)) !== diffId) {
      await writeFileAtomic(layout.diffIdByDigest(entry.Digest), diffId, 0o600);
    }
  });
}
