/**
 * Cache mounts shared across the farm's workers through its Redis and registry, per tenant and
 * id. After a step, the worker publishes what changed in the mount since the state it last
 * published or restored: the changed files' content as one tar blob in `slipway/<tenant>/
 * cache-mounts` (content the registry already holds is not sent again), the new tree (with
 * deletions) as a new version of the mount's record, by compare-and-set. Before a step, a
 * worker whose copy is older restores what differs, each file's sha256 checked. A tenant's cap
 * bounds the bytes its mounts keep referenced in the registry: past it, publishing stops and
 * the build log says so. Sharing never fails a build: the step runs with what the worker has.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import crypto from 'node:crypto';
import type { Redis } from 'ioredis';
import { readJsonIfExists, writeFileAtomic } from '../fs.js';
import { cacheMountKey, type CacheMountSync, type SyncTarget } from '../store/cache-mounts.js';
import { diffTree, sameEntry, scanTree, type Tree } from '../snapshot/mount-tree.js';
import { applyTree, packFiles, unpackFiles } from '../snapshot/mount-delta.js';
import { putRecord, readRecord, recordVersion, tenantMountBytes, type MountBlob, type MountRecord, type PublishedEntry } from './cache-mount-record.js';
import { cacheMountRepo } from './namespace.js';
import type { BlobStore } from './blobs.js';

/** What sharing needs: the farm's Redis and registry, the cap (bytes per tenant, 0 for none) and the build log. */
export interface CacheMountShareOptions { redis: Redis; blobs: BlobStore; capBytes: number; say: (line: string) => void }

/** What this instance last agreed with the farm on: the version and the tree it had then. */
interface LocalState { version: number; entries: Tree }

const ATTEMPTS = 5;

function mb(n: number): string {
  return `${(n / 1e6).toFixed(1)} MB`;
}

async function readState(file: string): Promise<LocalState> {
  const s = await readJsonIfExists<LocalState>(file).catch(() => undefined);
  return s && Number.isInteger(s.version) && s.entries && typeof s.entries === 'object' ? s : { version: 0, entries: {} };
}

async function writeState(file: string, s: LocalState): Promise<void> {
  await writeFileAtomic(file, JSON.stringify(s), 0o600, { fsync: false });
}

/** The farm's side of cache mounts for one build of one tenant. */
export function shareCacheMounts(o: CacheMountShareOptions): CacheMountSync {
  const guarded = (verb: string, fn: (t: SyncTarget) => Promise<void>) => async (t: SyncTarget) => {
    try {
      await fn(t);
    } catch (e) {
      o.say(`cache mount ${t.id}: not ${verb} (the step goes on with this worker's copy): ${(e as Error).message}\n`);
    }
  };
  return { restore: guarded('restored from the farm', (t) => restore(o, t)), publish: guarded('published to the farm', (t) => publish(o, t)) };
}

/** Files, folders and links of `target` the folder lacks, grouped by the tar holding each file. */
function restorePlan(remote: MountRecord, local: Tree, base: Tree): { fetch: Map<number, Map<string, string>>; apply: string[]; remove: string[] } {
  const fetch = new Map<number, Map<string, string>>();
  const apply: string[] = [];
  for (const [rel, e] of Object.entries(remote.entries)) {
    const le = local[rel];
    if (e.t === 'f' && !(le?.t === 'f' && le.h === e.h && le.s === e.s)) {
      const m = fetch.get(e.b!) ?? new Map<string, string>();
      fetch.set(e.b!, m.set(rel, e.h));
      apply.push(rel);
    } else if (!sameEntry(le, e)) apply.push(rel);
  }
  // Removed only what the farm removed and this copy had not changed since it last agreed.
  const remove = Object.keys(base).filter((p) => !(p in remote.entries) && sameEntry(base[p], local[p]));
  return { fetch, apply, remove };
}

async function restore(o: CacheMountShareOptions, t: SyncTarget): Promise<void> {
  const key = cacheMountKey(t.tenant, t.id);
  const state = await readState(t.stateFile);
  const v = await recordVersion(o.redis, t.tenant, key);
  if (v === 0 || v === state.version) return;
  const remote = await readRecord(o.redis, t.tenant, key);
  const local = scanTree(t.dir, state.entries);
  const plan = restorePlan(remote, local, state.entries);
  const stage = await fs.mkdtemp(path.join(t.workDir, '.restore-'));
  let bytes = 0;
  try {
    const files = new Map<string, string>();
    for (const [b, want] of plan.fetch) {
      const blob = remote.blobs[b]!;
      const dir = path.join(stage, `b${b}`);
      await fs.mkdir(dir);
      await o.blobs.get(cacheMountRepo(t.tenant), blob.digest, blob.size, path.join(dir, 'blob.tar'));
      bytes += blob.size;
      for (const [rel, f] of await unpackFiles(path.join(dir, 'blob.tar'), want, dir)) files.set(rel, f);
      for (const rel of want.keys()) if (!files.has(rel)) throw new Error(`blob ${blob.digest} lacks ${JSON.stringify(rel)}`);
    }
    applyTree(t.dir, { target: remote.entries, files, apply: plan.apply, remove: plan.remove });
  } finally {
    await fs.rm(stage, { recursive: true, force: true });
  }
  // Only what the farm has counts as agreed: a file of this copy it lacks is published after the next step.
  const after = scanTree(t.dir, remote.entries);
  const agreed: Tree = {};
  for (const rel of Object.keys(remote.entries)) if (after[rel]) agreed[rel] = after[rel]!;
  await writeState(t.stateFile, { version: v, entries: agreed });
  o.say(`cache mount ${t.id}: restored version ${v} from the farm (${[...plan.fetch.values()].reduce((a, m) => a + m.size, 0)} files fetched, ${bytes} bytes in ${plan.fetch.size} blobs; ${plan.remove.length} removed)\n`);
}

/** The new record: `remote` with this copy's changes, each file naming a tar that holds its content (undefined: none yet). */
function compose(remote: MountRecord, local: Tree, changed: string[], deleted: string[], blobFor: (h: string) => MountBlob | undefined): { next: MountRecord; missing: string[] } {
  const next: MountRecord = { version: remote.version + 1, blobs: [...remote.blobs], entries: { ...remote.entries } };
  const missing: string[] = [];
  for (const p of deleted) delete next.entries[p];
  for (const p of changed) {
    const e = local[p];
    if (!e) {
      delete next.entries[p];
      continue;
    }
    if (e.t !== 'f') {
      next.entries[p] = e;
      continue;
    }
    const blob = blobFor(e.h);
    if (!blob) {
      missing.push(p);
      continue;
    }
    let b = next.blobs.findIndex((x) => x.digest === blob.digest);
    if (b < 0) b = next.blobs.push(blob) - 1;
    next.entries[p] = { ...e, b };
  }
  // Tars no file names any more are dropped from the record (and from the cap's count).
  const used = [...new Set(Object.values(next.entries).flatMap((e) => (e.b === undefined ? [] : [e.b])))].sort((a, b) => a - b);
  const renum = new Map(used.map((b, i) => [b, i]));
  next.blobs = used.map((b) => next.blobs[b]!);
  for (const [p, e] of Object.entries(next.entries)) if (e.b !== undefined) next.entries[p] = { ...e, b: renum.get(e.b)! } as PublishedEntry;
  return { next, missing };
}

const recordBytes = (r: MountRecord) => r.blobs.reduce((a, b) => a + b.size, 0);

async function publish(o: CacheMountShareOptions, t: SyncTarget): Promise<void> {
  const key = cacheMountKey(t.tenant, t.id);
  const state = await readState(t.stateFile);
  const local = scanTree(t.dir, state.entries);
  // The farm forgot the mount (`farm rm-cache-mount`): this copy is published whole again.
  if (state.version > 0 && (await recordVersion(o.redis, t.tenant, key)) === 0) state.entries = {};
  const { changed, deleted } = diffTree(state.entries, local);
  if (changed.length === 0 && deleted.length === 0) return;
  const uploads: Array<{ blob: MountBlob; hashes: Set<string> }> = [];
  let sent = 0;
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const remote = await readRecord(o.redis, t.tenant, key);
    const held = new Map<string, MountBlob>();
    for (const e of Object.values(remote.entries)) if (e.t === 'f') held.set(e.h, remote.blobs[e.b!]!);
    const blobFor = (h: string) => uploads.find((u) => u.hashes.has(h))?.blob ?? held.get(h);
    let { next, missing } = compose(remote, local, changed, deleted, blobFor);
    if (missing.length > 0) {
      // Checked before sending too, so a build over the cap uploads nothing.
      const estimate = recordBytes(next) + missing.reduce((a, p) => a + local[p]!.s + 512, 1024);
      if (await overCap(o, t, remote, estimate)) return;
      const tar = path.join(t.workDir, `.publish-${crypto.randomBytes(6).toString('hex')}.tar`);
      try {
        const packed = await packFiles(t.dir, missing, tar);
        for (const p of missing) {
          if (packed[p]) local[p] = packed[p]!;
          else delete local[p];
        }
        const put = await o.blobs.put(cacheMountRepo(t.tenant), tar);
        if (put.uploaded) sent += put.size;
        uploads.push({ blob: { digest: put.digest, size: put.size }, hashes: new Set(Object.values(packed).map((e) => e.h)) });
      } finally {
        await fs.rm(tar, { force: true });
      }
      ({ next, missing } = compose(remote, local, changed, deleted, blobFor));
      if (missing.length > 0) throw new Error(`${missing.length} files changed while they were sent`);
    }
    const r = await putRecord(o.redis, { tenant: t.tenant, key, id: t.id, expected: remote.version, next, bytes: recordBytes(next), cap: o.capBytes });
    if (r.kind === 'cap') {
      capSay(o, t, r.total, remote.version);
      return;
    }
    if (r.kind === 'conflict') continue;
    // In step with the farm before: now at the new version. Behind it: the next restore fetches what others published.
    await writeState(t.stateFile, { version: state.version === remote.version ? r.version : state.version, entries: local });
    const files = changed.filter((p) => local[p]?.t === 'f').length;
    o.say(`cache mount ${t.id}: published version ${r.version} to the farm (${files} files changed, ${deleted.length} removed; ${sent} bytes uploaded; the mount holds ${mb(recordBytes(next))} in the registry)\n`);
    return;
  }
  o.say(`cache mount ${t.id}: not published to the farm: other workers published it ${ATTEMPTS} times meanwhile; this worker tries again after its next step that uses it\n`);
}

async function overCap(o: CacheMountShareOptions, t: SyncTarget, remote: MountRecord, bytes: number): Promise<boolean> {
  if (o.capBytes <= 0) return false;
  const total = (await tenantMountBytes(o.redis, t.tenant)) - recordBytes(remote) + bytes;
  if (total <= o.capBytes || bytes <= recordBytes(remote)) return false;
  capSay(o, t, total, remote.version);
  return true;
}

function capSay(o: CacheMountShareOptions, t: SyncTarget, total: number, version: number): void {
  o.say(`cache mount ${t.id}: not published to the farm: the tenant's shared cache mounts would hold ${mb(total)}, over the cap of ${mb(o.capBytes)} (worker --cache-mount-cap); other workers keep version ${version}\n`);
}
