import xxhash from 'xxhash-wasm';
import type { CacheKey, ImageId } from '../store/layout.js';
import { sha256Hex } from '../fs.js';

/** The xxhash-wasm instance, created once per thread. */
let hasher: Awaited<ReturnType<typeof xxhash>> | undefined;

/** Initialises xxhash-wasm for this thread (idempotent). */
export async function initHash(): Promise<Awaited<ReturnType<typeof xxhash>>> {
  hasher ??= await xxhash();
  return hasher;
}

/** The hasher; `initHash()` must have completed in this thread. */
export function hashApi(): Awaited<ReturnType<typeof xxhash>> {
  if (!hasher) throw new Error('xxhash not initialised: await initHash() first');
  return hasher;
}

/**
 * A stable JSON form: object keys sorted at every level, so equal values give equal text.
 * The cache key is xxh64 of this text, and the text itself is kept as the key's preimage.
 */
export function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o).filter((k) => o[k] !== undefined).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
}

/** xxh64 of the canonical preimage, 16 hex. */
export async function cacheKeyOf(preimage: unknown): Promise<{ key: CacheKey; text: string }> {
  const h = await initHash();
  const text = canonicalJson(preimage);
  return { key: h.h64ToString(text) as CacheKey, text };
}

/**
 * A built step's image id: its parent, its cache key and its layer's diff id. The same step on
 * the same parent giving the same layer has the same id on every machine (the farm relies on it).
 */
export function imageIdOf(parent: ImageId | null, key: string, diffId: string): ImageId {
  return sha256Hex(`${parent ?? ''}\n${key}\n${diffId}`) as ImageId;
}
