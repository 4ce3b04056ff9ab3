/**
 * RUN --mount=type=cache folders, kept on this store between builds, per tenant and id:
 *
 *   cache-mounts/<key>/meta.json           {tenant, id}; key = sha256(tenant \n id)
 *   cache-mounts/<key>/<n>/data/           instance n, the folder a step sees
 *   cache-mounts/<key>/<n>/users/<pid>-<r>-<sharing>   one marker per step using it now
 *
 * Choosing an instance and adding a marker happen under the key's lock file, so builds in
 * several processes agree: `shared` uses instance 0 alongside others (waiting only while a
 * `locked` user holds it), `locked` waits until instance 0 has no user at all, `private` takes
 * the first instance nobody uses, making a new (empty) one when all are busy. A marker whose
 * process is gone (kill -9) no longer counts. Nothing here ever enters a layer or a cache key.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import crypto from 'node:crypto';
import { pidAlive, sha256Hex, withLock, writeFileAtomic } from '../fs.js';
import { SlipwayError } from '../errors.js';
import type { StoreLayout } from './layout.js';

export type Sharing = 'shared' | 'private' | 'locked';

/** What a step asks for. `owner` is the data folder's host owner and mode when it is made. */
export interface CacheMountRequest {
  tenant: string;
  id: string;
  sharing: Sharing;
  owner: { uid: number; gid: number; mode: number };
  /** Fills a new instance's data folder (the `from`/`source` options). */
  seed?: (dataDir: string) => Promise<void>;
  /** Called once when the step has to wait for another user (sharing=locked). */
  onWait?: (pid: number) => void;
  signal?: AbortSignal;
  pollMs?: number;
  /** Shares the mount beyond this store (the farm): restored before use, published after. */
  sync?: CacheMountSync;
  /** A readonly mount is restored but never published. */
  readonly?: boolean;
}

/** One instance as a sync sees it: its data folder, a state file of its own, and a scratch folder on the same filesystem. */
export interface SyncTarget { tenant: string; id: string; dir: string; stateFile: string; workDir: string }

/**
 * What shares cache mounts beyond one store. `restore` runs under the key's lock while no other
 * step uses the instance (so nothing races its writes); `publish` runs after the step, while
 * the use still holds the instance (so prune cannot take it away). Neither may throw for a
 * failure to share: a cache mount is a cache, and the build goes on without it.
 */
export interface CacheMountSync {
  restore(t: SyncTarget): Promise<void>;
  publish(t: SyncTarget): Promise<void>;
}

function syncTarget(req: CacheMountRequest, instanceDir: string): SyncTarget {
  return { tenant: req.tenant, id: req.id, dir: path.join(instanceDir, 'data'), stateFile: path.join(instanceDir, 'farm-sync.json'), workDir: instanceDir };
}

/** A cache mount in use: its data folder, and the release that ends the use. */
export interface OpenCacheMount { dir: string; instance: number; release(): Promise<void> }

/** One instance, as `prune` and `farm status` see it. */
export interface CacheMountInfo { key: string; tenant: string; id: string; instance: number; bytes: number; lastUsedMs: number; inUse: boolean }

/** The store key of a tenant's cache id. */
export function cacheMountKey(tenant: string, id: string): string {
  return sha256Hex(`${tenant}\n${id}`).slice(0, 32);
}

/** Live users of an instance (dead markers are removed on the way): their pids and sharing modes. */
async function liveUsers(instanceDir: string): Promise<Array<{ pid: number; sharing: string }>> {
  const dir = path.join(instanceDir, 'users');
  const out: Array<{ pid: number; sharing: string }> = [];
  for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
    const [pidText, , sharing] = name.split('-');
    const pid = Number(pidText);
    if (Number.isInteger(pid) && pid > 0 && pidAlive(pid)) out.push({ pid, sharing: sharing ?? 'shared' });
    else await fs.rm(path.join(dir, name), { force: true });
  }
  return out;
}

async function instances(keyDir: string): Promise<number[]> {
  return (await fs.readdir(keyDir).catch(() => [] as string[])).filter((n) => /^\d+$/.test(n)).map(Number).sort((a, b) => a - b);
}

/** Makes instance `n` (data folder with its owner and mode, seeded), atomically. */
async function makeInstance(keyDir: string, n: number, req: CacheMountRequest): Promise<void> {
  const tmp = path.join(keyDir, `.new-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
  try {
    await fs.mkdir(path.join(tmp, 'users'), { recursive: true, mode: 0o700 });
    const data = path.join(tmp, 'data');
    if (req.seed) await req.seed(data);
    else await fs.mkdir(data);
    await fs.chown(data, req.owner.uid, req.owner.gid);
    await fs.chmod(data, req.owner.mode);
    await fs.rename(tmp, path.join(keyDir, String(n)));
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

/** Picks the instance this request may use now, or undefined to wait (under the key's lock). */
async function pick(keyDir: string, req: CacheMountRequest): Promise<{ n: number; blocker?: number }> {
  const all = await instances(keyDir);
  if (req.sharing === 'private') {
    for (const n of all) if ((await liveUsers(path.join(keyDir, String(n)))).length === 0) return { n };
    const n = (all.at(-1) ?? -1) + 1;
    await makeInstance(keyDir, n, req);
    return { n };
  }
  if (!all.includes(0)) {
    await makeInstance(keyDir, 0, req);
    return { n: 0 };
  }
  const users = await liveUsers(path.join(keyDir, '0'));
  const blocker = req.sharing === 'locked' ? users[0] : users.find((u) => u.sharing === 'locked');
  return blocker ? { n: -1, blocker: blocker.pid } : { n: 0 };
}

/** Takes a cache mount for one step; release it when the step is over. */
export async function openCacheMount(layout: StoreLayout, req: CacheMountRequest): Promise<OpenCacheMount> {
  const key = cacheMountKey(req.tenant, req.id);
  const keyDir = layout.cacheMountDir(key);
  let waited = false;
  for (;;) {
    if (req.signal?.aborted) throw new SlipwayError('ERR_CANCELLED', 'build cancelled');
    const got = await withLock(layout.lock(`cache-mount-${key}`), async () => {
      // Under the lock: `removeCacheMount` may remove an empty key folder meanwhile.
      await fs.mkdir(keyDir, { recursive: true, mode: 0o700 });
      await writeFileAtomic(path.join(keyDir, 'meta.json'), JSON.stringify({ tenant: req.tenant, id: req.id }), 0o600, { fsync: false });
      const p = await pick(keyDir, req);
      if (p.blocker !== undefined) return p;
      const instanceDir = path.join(keyDir, String(p.n));
      // Restored only while no other step uses the instance: nothing in a container can race the writes.
      if (req.sync && (await liveUsers(instanceDir)).length === 0) await req.sync.restore(syncTarget(req, instanceDir));
      const marker = path.join(keyDir, String(p.n), 'users', `${process.pid}-${crypto.randomBytes(4).toString('hex')}-${req.sharing}`);
      await fs.writeFile(marker, '');
      return { ...p, marker };
    });
    if ('marker' in got) {
      const instanceDir = path.join(keyDir, String(got.n));
      return {
        dir: path.join(instanceDir, 'data'),
        instance: got.n,
        release: async () => {
          if (req.sync && !req.readonly) await req.sync.publish(syncTarget(req, instanceDir));
          const now = new Date();
          await fs.utimes(instanceDir, now, now).catch(() => undefined);
          await fs.rm(got.marker, { force: true });
        },
      };
    }
    if (!waited) {
      waited = true;
      req.onWait?.(got.blocker!);
    }
    await new Promise((r) => setTimeout(r, req.pollMs ?? 100));
  }
}

async function du(p: string): Promise<number> {
  const st = await fs.lstat(p).catch(() => undefined);
  if (!st) return 0;
  let total = st.isDirectory() ? 4096 : st.size;
  if (st.isDirectory()) for (const n of await fs.readdir(p).catch(() => [] as string[])) total += await du(path.join(p, n));
  return total;
}

/** Every cache mount instance of the store, with its size and last use. */
export async function listCacheMounts(layout: StoreLayout): Promise<CacheMountInfo[]> {
  const out: CacheMountInfo[] = [];
  for (const key of await fs.readdir(layout.cacheMountsDir).catch(() => [] as string[])) {
    const keyDir = layout.cacheMountDir(key);
    const meta = await fs.readFile(path.join(keyDir, 'meta.json'), 'utf8').then((t) => JSON.parse(t) as { tenant: string; id: string }, () => undefined);
    if (!meta) continue;
    for (const n of await instances(keyDir)) {
      const dir = path.join(keyDir, String(n));
      const st = await fs.stat(dir).catch(() => undefined);
      if (!st) continue;
      out.push({ key, ...meta, instance: n, bytes: await du(path.join(dir, 'data')), lastUsedMs: st.mtimeMs, inUse: (await liveUsers(dir)).length > 0 });
    }
  }
  return out;
}

/** Removes one instance unless a step uses it now; true when removed. */
export async function removeCacheMount(layout: StoreLayout, key: string, instance: number): Promise<boolean> {
  const keyDir = layout.cacheMountDir(key);
  return withLock(layout.lock(`cache-mount-${key}`), async () => {
    const dir = path.join(keyDir, String(instance));
    if ((await liveUsers(dir)).length > 0) return false;
    // Renamed away first: a half-removed folder is never mistaken for a cache.
    const gone = path.join(keyDir, `.gone-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
    try {
      await fs.rename(dir, gone);
    } catch {
      return false;
    }
    await fs.rm(gone, { recursive: true, force: true });
    if ((await instances(keyDir)).length === 0) await fs.rm(keyDir, { recursive: true, force: true });
    return true;
  });
}

/** What `pruneCacheMounts` removed (or would remove with `dryRun`). */
export interface CacheMountPruneResult { removed: CacheMountInfo[]; reclaimedBytes: number; remainingBytes: number }

/**
 * Removes cache mount instances no step uses now, least recently used first: all of them
 * (used longer ago than `keepDurationMs` when given), or, with `budget`, only until the
 * remaining instances fit in it.
 */
export async function pruneCacheMounts(layout: StoreLayout, opts: { budget?: number; keepDurationMs?: number; dryRun?: boolean; now?: number } = {}): Promise<CacheMountPruneResult> {
  const now = opts.now ?? Date.now();
  const all = (await listCacheMounts(layout)).sort((a, b) => a.lastUsedMs - b.lastUsedMs);
  let remaining = all.reduce((a, m) => a + m.bytes, 0);
  const removed: CacheMountInfo[] = [];
  for (const m of all) {
    if (opts.budget !== undefined && remaining <= opts.budget) break;
    if (m.inUse || (opts.keepDurationMs !== undefined && now - m.lastUsedMs < opts.keepDurationMs)) continue;
    if (!opts.dryRun && !(await removeCacheMount(layout, m.key, m.instance))) continue;
    removed.push(m);
    remaining -= m.bytes;
  }
  return { removed, reclaimedBytes: removed.reduce((a, m) => a + m.bytes, 0), remainingBytes: remaining };
}
