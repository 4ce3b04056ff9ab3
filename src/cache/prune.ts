import fs from 'node:fs/promises';
import path from 'node:path';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { pidAlive, withLock } from '../fs.js';
import type { StoreLayout, ImageId } from '../store/layout.js';
import { imageChain, listImageIds, readImage, readLayerSize, removeImageDir } from '../store/graph.js';
import { listTags, readRepositories } from '../store/repositories.js';
import { readBuildRecords } from './history.js';
import type { CacheRecord } from './cache-index.js';

/** What `prune` removed (or would remove with `dryRun`). */
export interface PruneResult {
  removed: Array<{ id: ImageId; bytes: number; value: number }>;
  reclaimedBytes: number;
  /** Store size (sum of layer sizes) before and after. */
  before: number;
  after: number;
  /** Bytes held by tagged images and running builds, which are never removed. */
  pinnedBytes: number;
}

export interface PruneOptions {
  keepStorage?: number;
  keepDurationMs?: number;
  dryRun?: boolean;
  now?: number;
}

/**
 * Marks images a running build uses, so `prune` keeps them (and their parents): one empty file
 * per image in `running/<pid>-<build>/`, made when the build first stands on it. Creating an
 * empty file is one system call; rewriting one list per image (a temp file renamed over the
 * old) made ext4 flush the file at every cached step (its rename-over-existing safeguard).
 */
export async function markRunning(layout: StoreLayout, buildId: string, id: string): Promise<void> {
  if (!/^[0-9a-f]{64}$/.test(id)) return; // ids only: a name never leaves the folder
  const dir = path.join(layout.runningDir, `${process.pid}-${buildId}`);
  mkdirSync(dir, { recursive: true });
  try {
    closeSync(openSync(path.join(dir, id), 'wx', 0o644));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
}

export async function clearRunning(layout: StoreLayout, buildId: string): Promise<void> {
  await fs.rm(path.join(layout.runningDir, `${process.pid}-${buildId}`), { recursive: true, force: true });
}

/** Images that running builds (live processes) stand on. */
export async function runningIds(layout: StoreLayout): Promise<string[]> {
  const out: string[] = [];
  for (const n of await fs.readdir(layout.runningDir).catch(() => [] as string[])) {
    const pid = Number.parseInt(n, 10);
    if (!pidAlive(pid)) continue;
    out.push(...(await fs.readdir(path.join(layout.runningDir, n)).catch(() => [] as string[])));
  }
  return out;
}

/** Every cache record: image id -> the step's recorded build time. */
async function rebuildTimes(layout: StoreLayout): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const d of await fs.readdir(layout.cacheDir).catch(() => [] as string[])) {
    for (const f of await fs.readdir(path.join(layout.cacheDir, d)).catch(() => [] as string[])) {
      try {
        for (const r of JSON.parse(await fs.readFile(path.join(layout.cacheDir, d, f), 'utf8')) as CacheRecord[]) {
          out.set(r.imageId, Math.max(out.get(r.imageId) ?? 0, r.durationMs));
        }
      } catch {
        // skip a record being written
      }
    }
  }
  return out;
}

/**
 * Removes cache images nothing references, least worth keeping first: value = rebuild time ×
 * (1 + recent hits) ÷ size. Images in the chain of a tag or of a running build are never
 * removed, and an image goes only after every image built on it, so what remains always runs.
 * With `keepStorage`, stops once the store is under the cap; without it removes every
 * unreferenced image (older than `keepDurationMs` when given).
 */
export async function pruneCache(layout: StoreLayout, opts: PruneOptions = {}): Promise<PruneResult> {
  return withLock(layout.lock('graph'), async () => {
    const now = opts.now ?? Date.now();
    const ids = await listImageIds(layout);
    const info = new Map<string, { parent?: string; created: number; bytes: number }>();
    for (const id of ids) {
      const json = await readImage(layout, id).catch(() => undefined);
      if (!json) continue;
      const tarBytes = (await fs.stat(layout.layerTar(id)).catch(() => undefined))?.size ?? 0;
      info.set(id, { ...(json.parent ? { parent: json.parent } : {}), created: Date.parse(json.created), bytes: (await readLayerSize(layout, id)) + tarBytes });
    }
    const pinned = new Set<string>();
    const pinChain = async (id: string) => {
      if (!info.has(id) || pinned.has(id)) return;
      for (const c of await imageChain(layout, id as ImageId).catch(() => [])) pinned.add(c.id);
    };
    for (const t of listTags(await readRepositories(layout))) await pinChain(t.id);
    for (const id of await runningIds(layout)) await pinChain(id);
    const times = await rebuildTimes(layout);
    const hits = new Map<string, number>();
    const lastUse = new Map<string, number>();
    for (const b of await readBuildRecords(layout)) {
      for (const s of b.steps) {
        if (!s.imageId) continue;
        lastUse.set(s.imageId, Math.max(lastUse.get(s.imageId) ?? 0, Date.parse(b.started)));
        if (s.hit && (opts.keepDurationMs === undefined || now - Date.parse(b.started) <= opts.keepDurationMs)) hits.set(s.imageId, (hits.get(s.imageId) ?? 0) + 1);
      }
    }
    const children = new Map<string, Set<string>>();
    for (const [id, i] of info) if (i.parent) (children.get(i.parent) ?? children.set(i.parent, new Set()).get(i.parent)!).add(id);
    const value = (id: string) => ((times.get(id) ?? 0) + 1) * (1 + (hits.get(id) ?? 0)) / (info.get(id)!.bytes + 4096);
    const total = () => [...info.values()].reduce((a, i) => a + i.bytes, 0);
    const before = total();
    const pinnedBytes = [...pinned].reduce((a, id) => a + (info.get(id)?.bytes ?? 0), 0);
    const removed: PruneResult['removed'] = [];
    const recent = (id: string) => opts.keepDurationMs !== undefined && now - Math.max(info.get(id)!.created, lastUse.get(id) ?? 0) < opts.keepDurationMs;
    for (;;) {
      if (opts.keepStorage !== undefined && total() <= opts.keepStorage) break;
      // Removable now: unpinned, not kept by --keep-duration, no remaining children.
      const leaves = [...info.keys()].filter((id) => !pinned.has(id) && !recent(id) && (children.get(id)?.size ?? 0) === 0);
      if (leaves.length === 0) break;
      leaves.sort((a, b) => value(a) - value(b) || a.localeCompare(b));
      const id = leaves[0]!;
      const i = info.get(id)!;
      if (!opts.dryRun) await removeImageDir(layout, id as ImageId);
      removed.push({ id: id as ImageId, bytes: i.bytes, value: value(id) });
      info.delete(id);
      if (i.parent) children.get(i.parent)?.delete(id);
    }
    const after = total();
    return { removed, reclaimedBytes: before - after, before, after, pinnedBytes };
  });
}
