import fs from 'node:fs/promises';
import { existsSync, lstatSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { StoreLayout, isImageId, type ImageId } from './layout.js';
import type { ImageJson } from '../image-config.js';
import { SlipwayError } from '../errors.js';
import { mkdirAll, pidAlive } from '../fs.js';
import { parseReference } from './reference.js';
import { readRepositories } from './repositories.js';

/** Creates the store's folders (idempotent). */
export async function ensureStore(layout: StoreLayout): Promise<void> {
  await mkdirAll(layout.graph, 0o700);
  await makeTmpRoot(layout);
  await mkdirAll(layout.cacheDir, 0o700);
}

/**
 * `graph/_tmp/`, where every new layer is made (a step's scratch folder, an unpacked pull).
 * When this call makes it, it gets ext2/3/4's Orlov "top of a hierarchy" flag (`chattr +T`):
 * each scratch folder made in it then starts in a block group of its own with free inodes,
 * not next to the store's, where a store deleted a moment ago freed its inodes. On an ext4
 * without a journal, allocating an inode skips every inode of its group freed in the last
 * minutes, one buffer lookup each (`recently_deleted` in fs/ext4/ialloc.c): a step writing
 * 10,000 files after such a delete took up to 1.5-2.6 s instead of 0.3 s. A placement hint
 * only: on other file systems, or without `chattr`, nothing changes.
 */
async function makeTmpRoot(layout: StoreLayout): Promise<void> {
  if (existsSync(layout.tmp)) return;
  await mkdirAll(layout.tmp, 0o700);
  const { execFile } = await import('node:child_process');
  await new Promise<void>((resolve) => execFile('chattr', ['+T', layout.tmp], { timeout: 10_000 }, () => resolve()));
}

/** A fresh private scratch folder in `graph/_tmp/`, named after this process so a crash can be swept. */
export async function makeTmpDir(layout: StoreLayout, label = 'tmp'): Promise<string> {
  await makeTmpRoot(layout);
  const dir = path.join(layout.tmp, `${process.pid}-${label}-${crypto.randomBytes(6).toString('hex')}`);
  mkdirSync(dir, { mode: 0o700 });
  return dir;
}

/**
 * Removes what dead processes left in `graph/_tmp/` (a build killed with -9). Folders of
 * living processes (a concurrent build) are left alone.
 */
export async function sweepTmp(layout: StoreLayout): Promise<void> {
  let names: string[];
  try {
    names = await fs.readdir(layout.tmp);
  } catch {
    return;
  }
  for (const name of names) {
    const pid = Number.parseInt(name, 10);
    if (Number.isInteger(pid) && pid > 0 && pidAlive(pid)) continue;
    await fs.rm(path.join(layout.tmp, name), { recursive: true, force: true }).catch(() => undefined);
  }
}

/** What `registerImage` needs: the id, its JSON, and a prepared layer folder to move in. */
export interface NewImage {
  id: ImageId;
  json: ImageJson;
  /** A folder on the store's filesystem (normally in `graph/_tmp/`); it is renamed into the image. */
  layerDir: string;
  diffId: string;
  layerSize: number;
  /** The layer's original tar (import/load/pull), moved in as `layer.tar`. */
  originalTar?: string;
  /** The config document's exact bytes (pull/load), written as `config.json`. */
  configJson?: string | Uint8Array;
}

/**
 * Registers an image atomically (Docker's graph.go): everything is written into a folder in
 * `graph/_tmp/`, then one rename makes `graph/<id>` appear whole; a failure (a full disk)
 * removes that folder again. An image that exists already (ids are content-derived) is kept
 * and the new copy discarded, after checking that it is the same layer on the same parent:
 * an id is never allowed to name two different contents. Returns false in that case.
 */
export async function registerImage(layout: StoreLayout, img: NewImage): Promise<boolean> {
  const final = layout.imageDir(img.id);
  if (existsSync(path.join(final, 'json'))) {
    await checkSameImage(layout, img);
    await fs.rm(img.layerDir, { recursive: true, force: true });
    return false;
  }
  const staging = await makeTmpDir(layout, 'img');
  try {
    // A few small files and renames, made in place: every built step registers an image on the
    // scheduler's thread, where each awaited call was a thread-pool round trip.
    renameSync(img.layerDir, path.join(staging, 'layer'));
    const jsonText = JSON.stringify(img.json);
    writeFileSync(path.join(staging, 'json'), jsonText, { mode: 0o600 });
    writeFileSync(path.join(staging, 'layersize'), String(img.layerSize), { mode: 0o600 });
    writeFileSync(path.join(staging, 'diffid'), img.diffId, { mode: 0o600 });
    if (img.originalTar) renameSync(img.originalTar, path.join(staging, 'layer.tar'));
    if (img.configJson !== undefined) writeFileSync(path.join(staging, 'config.json'), img.configJson, { mode: 0o600 });
    // The layer folder's own mode is that of the rootfs '/': keep it as the layer recorded it.
    renameSync(staging, final);
    // The next step reads it at once (its parent chain): from the memo, as it is on disk.
    remember(layout.imageJson(img.id), deepFreeze(JSON.parse(jsonText) as ImageJson));
    return true;
  } catch (e) {
    try {
      rmSync(staging, { recursive: true, force: true });
    } catch {
      // left for the sweep of graph/_tmp (named after this process)
    }
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOTEMPTY' || code === 'EEXIST') {
      // Another process registered the same content-derived id first: theirs is as good as ours.
      await checkSameImage(layout, img);
      return false;
    }
    throw e;
  }
}

/** Refuses a second content under an existing id (a forged id in a loaded archive, say). */
async function checkSameImage(layout: StoreLayout, img: NewImage): Promise<void> {
  const had = await readImage(layout, img.id);
  const hadDiff = await readDiffId(layout, img.id).catch(() => undefined);
  if ((had.parent ?? '') === (img.json.parent ?? '') && (hadDiff === undefined || hadDiff === img.diffId)) return;
  throw new SlipwayError('ERR_IMAGE_CONFLICT', `image ${img.id.slice(0, 12)} already exists with a different layer or parent; remove it (slipway rmi) before adding this one`);
}

/**
 * Image JSON already read, by file. An id is the hash of its content, so an image's JSON never
 * changes while the image exists: a build of many cached steps read the same parents' JSON over
 * and over (each step's chain). Frozen, so that no caller can change what the next one reads.
 */
const imageJsonMemo = new Map<string, ImageJson>();
const MEMO_MAX = 8192;

function deepFreeze<T>(o: T): T {
  if (o !== null && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

/**
 * Reads `graph/<id>/json`. From the memo when it was read before and the image is still there
 * (one stat: `rmi` or `prune`, here or in another process, may have removed it since); with
 * `known`, a parent of an image just checked, without that stat (a parent is never removed
 * before its children).
 */
export async function readImage(layout: StoreLayout, id: ImageId, known = false): Promise<ImageJson> {
  const file = layout.imageJson(id);
  const memo = imageJsonMemo.get(file);
  if (memo !== undefined && (known || existsSync(file))) return memo;
  let json: ImageJson;
  try {
    // In place: a small file, and the scheduler's thread reads one for every step it runs.
    json = deepFreeze(JSON.parse(readFileSync(file, 'utf8')) as ImageJson);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      imageJsonMemo.delete(file);
      throw new SlipwayError('ERR_IMAGE_NOT_FOUND', `No such image: ${id}`);
    }
    throw e;
  }
  remember(file, json);
  return json;
}

function remember(file: string, json: ImageJson): void {
  if (imageJsonMemo.size >= MEMO_MAX) imageJsonMemo.delete(imageJsonMemo.keys().next().value!);
  imageJsonMemo.set(file, json);
}

/** True when `graph/<id>` is a complete image. */
export async function hasImage(layout: StoreLayout, id: string): Promise<boolean> {
  if (!isImageId(id)) return false;
  // In place: every cache hit and every step's claim asks this.
  try {
    lstatSync(layout.imageJson(id));
    return true;
  } catch {
    return false;
  }
}

/** The layer's diff id (`sha256:...`). */
export async function readDiffId(layout: StoreLayout, id: ImageId): Promise<string> {
  return (await fs.readFile(layout.diffIdFile(id), 'utf8')).trim();
}

/** The layer's size in bytes (`layersize`). */
export async function readLayerSize(layout: StoreLayout, id: ImageId): Promise<number> {
  // In place, as readImage's stat: a few bytes, read for every cached step's statistics.
  return Number.parseInt(readFileSync(layout.layerSize(id), 'utf8'), 10) || 0;
}

/** Every image id in the graph. */
export async function listImageIds(layout: StoreLayout): Promise<ImageId[]> {
  let names: string[];
  try {
    names = await fs.readdir(layout.graph);
  } catch {
    return [];
  }
  return names.filter(isImageId).sort() as ImageId[];
}

/** The chain from `id` down to its root: `[id, parent, grandparent, ...]`. */
export async function imageChain(layout: StoreLayout, id: ImageId): Promise<Array<{ id: ImageId; json: ImageJson }>> {
  const out: Array<{ id: ImageId; json: ImageJson }> = [];
  let cur: ImageId | undefined = id;
  const seen = new Set<string>();
  while (cur) {
    if (seen.has(cur)) throw new SlipwayError('ERR_INTERNAL', `image ${cur} has a parent loop`);
    seen.add(cur);
    const json = await readImage(layout, cur, cur !== id);
    out.push({ id: cur, json });
    cur = json.parent ? (json.parent as ImageId) : undefined;
  }
  return out;
}

/** Map parent id -> child ids, over the whole graph. */
export async function childrenIndex(layout: StoreLayout): Promise<Map<string, ImageId[]>> {
  const idx = new Map<string, ImageId[]>();
  for (const id of await listImageIds(layout)) {
    const json = await readImage(layout, id).catch(() => undefined);
    if (!json?.parent) continue;
    const list = idx.get(json.parent) ?? [];
    list.push(id);
    idx.set(json.parent, list);
  }
  return idx;
}

/**
 * Resolves a user's reference: `name[:tag]`, a full id (optionally `sha256:`), or a unique
 * id prefix. An ambiguous prefix is an error naming the candidates' count.
 */
export async function resolveImage(layout: StoreLayout, ref: string): Promise<ImageId> {
  const bare = ref.startsWith('sha256:') ? ref.slice(7) : ref;
  if (isImageId(bare)) {
    if (await hasImage(layout, bare)) return bare;
    throw new SlipwayError('ERR_IMAGE_NOT_FOUND', `No such image: ${ref}`);
  }
  const repos = await readRepositories(layout);
  if (!ref.startsWith('sha256:')) {
    try {
      const r = parseReference(ref);
      const id = repos.Repositories[r.repository]?.[r.tag];
      if (id) return id as ImageId;
    } catch {
      // not a valid name: it may still be an id prefix
    }
  }
  if (/^[0-9a-f]{1,63}$/.test(bare)) {
    const matches = (await listImageIds(layout)).filter((id) => id.startsWith(bare));
    if (matches.length === 1) return matches[0]!;
    if (matches.length > 1) {
      throw new SlipwayError('ERR_AMBIGUOUS_REFERENCE', `${ref}: ambiguous image id prefix (${matches.length} images match)`);
    }
  }
  throw new SlipwayError('ERR_IMAGE_NOT_FOUND', `No such image: ${ref}`);
}

/** Removes `graph/<id>` atomically (renamed away first, so it vanishes whole). */
export async function removeImageDir(layout: StoreLayout, id: ImageId): Promise<void> {
  const trash = await makeTmpDir(layout, 'del');
  await fs.rename(layout.imageDir(id), path.join(trash, 'img'));
  await fs.rm(trash, { recursive: true, force: true });
}

/**
 * Takes away an image this process just added (a load rolled back). Renamed away first when
 * there is room for a scratch folder; on a full disk it is removed in place.
 */
export async function discardImage(layout: StoreLayout, id: ImageId): Promise<void> {
  try {
    await removeImageDir(layout, id);
  } catch {
    await fs.rm(layout.imageDir(id), { recursive: true, force: true });
  }
}

/** The layer folders of an image's chain that hold files, top-most first (overlay lowerdir order). */
export async function lowerDirsOf(layout: StoreLayout, id: ImageId): Promise<string[]> {
  const chain = await imageChain(layout, id);
  return chain.filter((c) => !c.json.throwaway).map((c) => layout.layerDir(c.id));
}
