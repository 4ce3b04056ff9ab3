/**
 * A shared cache mount's record in Redis (one hash per tenant and id): its version, its tree
 * (path -> entry, each file naming the change tar in the registry that holds its content), the
 * tars still referenced and their bytes. A new version is written only by compare-and-set on the
 * version (a Lua script), which also enforces the tenant's cap: concurrent publishers never
 * overwrite each other, the loser reads the new record and tries again.
 */
import type { Redis } from 'ioredis';
import { isSafeRel, type TreeEntry } from '../snapshot/mount-tree.js';
import { cacheMountKey } from '../store/cache-mounts.js';
import { connect } from './connection.js';
import { CACHE_MOUNTS_KEY, cacheMountBytesKey, cacheMountRecordKey, checkTenant } from './namespace.js';

/** A change tar in the tenant's cache-mount repository. */
export interface MountBlob { digest: string; size: number }

/** A tree entry as published: a file's `b` is the index of the tar that holds it. */
export type PublishedEntry = TreeEntry & { b?: number };

/** The published state of one mount. */
export interface MountRecord { version: number; blobs: MountBlob[]; entries: Record<string, PublishedEntry> }

const DIGEST = /^sha256:[0-9a-f]{64}$/;
const HEX = /^[0-9a-f]{64}$/;

/** Reads a record, refusing any path or reference that could escape the mount or the tenant's repository. */
function parseManifest(version: number, text: string): MountRecord {
  const raw = JSON.parse(text) as { blobs?: unknown; entries?: unknown };
  const blobs = Array.isArray(raw.blobs) ? raw.blobs as MountBlob[] : [];
  if (!blobs.every((b) => typeof b?.digest === 'string' && DIGEST.test(b.digest) && Number.isSafeInteger(b.size) && b.size >= 0)) throw new Error('bad blob list');
  const entries = (raw.entries && typeof raw.entries === 'object' ? raw.entries : {}) as Record<string, PublishedEntry>;
  for (const [rel, e] of Object.entries(entries)) {
    const ints = [e.m, e.u, e.g, e.mt, e.s].every((n) => Number.isSafeInteger(n) && n >= 0);
    const ok = isSafeRel(rel) && ints && (e.t === 'd' || e.t === 'l' || (e.t === 'f' && HEX.test(e.h) && e.b !== undefined && Number.isInteger(e.b) && e.b >= 0 && e.b < blobs.length));
    if (!ok || typeof e.h !== 'string') throw new Error(`bad entry ${JSON.stringify(rel)}`);
  }
  return { version, blobs, entries };
}

/** The published version of a mount (0 when there is none): one round trip, for the common "up to date" case. */
export async function recordVersion(redis: Redis, tenant: string, key: string): Promise<number> {
  return Number(await redis.hget(cacheMountRecordKey(tenant, key), 'version') ?? 0);
}

/** The published record (version 0 and nothing in it when there is none). */
export async function readRecord(redis: Redis, tenant: string, key: string): Promise<MountRecord> {
  const [v, manifest] = await redis.hmget(cacheMountRecordKey(tenant, key), 'version', 'manifest');
  if (!v || !manifest) return { version: 0, blobs: [], entries: {} };
  try {
    return parseManifest(Number(v), manifest);
  } catch (e) {
    throw new Error(`cache mount record ${key} of tenant ${tenant} is malformed: ${(e as Error).message}`);
  }
}

// KEYS: record, tenant bytes, index. ARGV: expected version, manifest, bytes, files, now, cap, id, member.
// Growing past the cap is refused; a record that shrinks is always taken.
const PUT = `
local v = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if v ~= tonumber(ARGV[1]) then return {0, v} end
local old = tonumber(redis.call('HGET', KEYS[1], 'bytes') or '0')
local new = tonumber(ARGV[3])
local total = tonumber(redis.call('GET', KEYS[2]) or '0') - old + new
local cap = tonumber(ARGV[6])
if cap > 0 and total > cap and new > old then return {-1, total} end
redis.call('HSET', KEYS[1], 'version', v + 1, 'manifest', ARGV[2], 'bytes', ARGV[3], 'files', ARGV[4], 'updatedAt', ARGV[5], 'id', ARGV[7])
redis.call('SET', KEYS[2], total)
redis.call('SADD', KEYS[3], ARGV[8])
return {1, v + 1}
`;

/** What a compare-and-set did: written (the new version), lost to another publisher, or refused by the cap (the total it would make). */
export type PutOutcome = { kind: 'written'; version: number } | { kind: 'conflict'; version: number } | { kind: 'cap'; total: number };

/** Writes `next` as version `expected + 1` if the record is still at `expected` and the tenant stays within `cap` (0: none). */
export async function putRecord(redis: Redis, o: { tenant: string; key: string; id: string; expected: number; next: MountRecord; bytes: number; cap: number }): Promise<PutOutcome> {
  const files = Object.values(o.next.entries).filter((e) => e.t === 'f').length;
  const manifest = JSON.stringify({ blobs: o.next.blobs, entries: o.next.entries });
  const [status, n] = await redis.eval(PUT, 3, cacheMountRecordKey(o.tenant, o.key), cacheMountBytesKey(o.tenant), CACHE_MOUNTS_KEY,
    String(o.expected), manifest, String(o.bytes), String(files), String(Date.now()), String(o.cap), o.id, `${o.tenant}/${o.key}`) as [number, number];
  if (status === 1) return { kind: 'written', version: n };
  return status === 0 ? { kind: 'conflict', version: n } : { kind: 'cap', total: n };
}

// KEYS: record, tenant bytes, index. ARGV: member. Returns the bytes freed, -1 when there was no record.
const REMOVE = `
local b = redis.call('HGET', KEYS[1], 'bytes')
redis.call('SREM', KEYS[3], ARGV[1])
if not b then return -1 end
redis.call('DEL', KEYS[1])
redis.call('DECRBY', KEYS[2], b)
return tonumber(b)
`;

/**
 * Forgets a shared mount (the operator's `farm rm-cache-mount`): its bytes no longer count
 * against the cap. Workers keep their copies; the next publish of one sends it whole again.
 */
export async function removeRecord(redis: Redis, tenant: string, key: string): Promise<number | undefined> {
  const n = Number(await redis.eval(REMOVE, 3, cacheMountRecordKey(tenant, key), cacheMountBytesKey(tenant), CACHE_MOUNTS_KEY, `${tenant}/${key}`));
  return n < 0 ? undefined : n;
}

/** `farm rm-cache-mount TENANT ID`: the bytes freed, undefined when the farm had no such mount. */
export async function forgetSharedMount(redisUrl: string, tenant: string, id: string): Promise<number | undefined> {
  const redis = connect(redisUrl, 'producer');
  try {
    return await removeRecord(redis, checkTenant(tenant), cacheMountKey(tenant, id));
  } finally {
    redis.disconnect();
  }
}

/** The bytes a tenant's shared cache mounts hold now. */
export async function tenantMountBytes(redis: Redis, tenant: string): Promise<number> {
  return Number(await redis.get(cacheMountBytesKey(tenant)) ?? 0);
}

/** One shared cache mount, as `farm status` shows it. */
export interface SharedMountInfo { tenant: string; id: string; bytes: number; files: number; version: number; updatedAt: number }

/** Every shared cache mount of the farm, largest first. */
export async function listSharedMounts(redis: Redis): Promise<SharedMountInfo[]> {
  const out: SharedMountInfo[] = [];
  for (const member of await redis.smembers(CACHE_MOUNTS_KEY)) {
    const [tenant, key] = member.split('/');
    if (!tenant || !key) continue;
    try {
      checkTenant(tenant);
    } catch {
      continue;
    }
    const [id, bytes, files, version, updatedAt] = await redis.hmget(cacheMountRecordKey(tenant, key), 'id', 'bytes', 'files', 'version', 'updatedAt');
    if (id === null || id === undefined) continue;
    out.push({ tenant, id, bytes: Number(bytes ?? 0), files: Number(files ?? 0), version: Number(version ?? 0), updatedAt: Number(updatedAt ?? 0) });
  }
  return out.sort((a, b) => b.bytes - a.bytes || a.tenant.localeCompare(b.tenant));
}
