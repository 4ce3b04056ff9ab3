import fs from 'node:fs/promises';
import path from 'node:path';
import { createWriteStream } from 'node:fs';
import { packLayer, packSmallLayer } from './pack.js';
import { packLayerNative } from './pack-native.js';
import { syncLayer } from './sync-layer.js';
import { EMPTY_LAYER_DIFF_ID } from '../store/layout.js';
import { shiftOwnersBack } from '../sandbox/shift-owners.js';
import type { IdMapping } from '../sandbox/userns.js';

/**
 * Entries above which a step's layer goes to the native packer (native/pack.c): below, starting
 * it (about 2 ms) costs more than the JavaScript walk (20-35 µs an entry on a 2-core VM), which
 * a layer above wastes on its first entries. many-steps touched (small layers) through the
 * engine, alternated: 440 ms with the JavaScript pack only, 454 ms with the native one only.
 */
const NATIVE_PACK_ABOVE = 128;

/** A finished layer folder: its diff id, Docker's layersize, its tar's size, and the tar when one was kept. */
export interface FinishedLayer { layerDir: string; diffId: string; size: number; tarSize: number; empty: boolean; tarFile?: string }

/** What a step's layer gets before it is measured: SOURCE_DATE_EPOCH, and whether its tar is kept (the farm publishes it). */
export interface FinishOptions { clampMtime?: number; keepTar?: boolean }

/**
 * How the layer was made: a RUN's still holds host owners (its container's `ownersBack`), which
 * the pack maps back; WORKDIR's holds folders only (`foldersOnly`), made without an overlay.
 */
export interface FinishRun { ownersBack?: IdMapping; foldersOnly?: boolean }

/**
 * Measures a step's new layer folder in one walk: the pack gives the diff id, the tar's size and
 * the layersize together, and writes the tar beside the folder (`layer.tar`) when it is to be
 * kept, so nothing packs this layer again (not the farm's publish, not `push`, not `save`).
 * With SOURCE_DATE_EPOCH, mtimes above it are clamped on disk first, so the folder and its tar
 * agree whoever packs it later.
 */
export async function finishLayer(layerDir: string, o: FinishOptions = {}, r: FinishRun = {}): Promise<FinishedLayer> {
  if (o.clampMtime !== undefined) await clampMtimes(layerDir, o.clampMtime);
  const empty = (await fs.readdir(layerDir)).length === 0;
  if (empty) {
    if (r.ownersBack) shiftOwnersBack(layerDir, r.ownersBack);
    return { layerDir, diffId: EMPTY_LAYER_DIFF_ID, size: 0, tarSize: 1024, empty };
  }
  const tarFile = o.keepTar ? path.join(path.dirname(layerDir), 'layer.tar') : undefined;
  const owners = r.ownersBack ? { ownersBack: r.ownersBack } : {};
  // A small layer here; a larger one by the native packer; what that leaves (a PAX header) here,
  // whole. A tar to keep (the farm's) is written by one packer only: the native one, or this one.
  const pack = async () => (tarFile === undefined ? await packSmallLayer(layerDir, NATIVE_PACK_ABOVE, owners) : undefined)
    ?? (await packLayerNative(layerDir, tarFile, r.ownersBack))
    ?? (await packLayer(layerDir, tarFile ? createWriteStream(tarFile, { mode: 0o600 }) : null, owners));
  // On disk before it is registered, written beside the pack (the owners it maps back are
  // journalled before the layer's rename into the graph, as metadata is ordered). Folders alone
  // have no file data to write: the journal orders them before that rename too.
  const [packed] = await Promise.all([pack(), r.foldersOnly ? undefined : syncLayer(layerDir)]);
  return { layerDir, diffId: packed.diffId, size: packed.layerSize, tarSize: packed.size, empty, ...(tarFile ? { tarFile } : {}) };
}

/** Sets every mtime above `epoch` (seconds) to `epoch`, children before their folder (the folder itself too). */
export async function clampMtimes(dir: string, epoch: number): Promise<void> {
  const t = new Date(epoch * 1000);
  for (const name of await fs.readdir(dir)) {
    const p = path.join(dir, name);
    const st = await fs.lstat(p);
    if (st.isDirectory()) await clampMtimes(p, epoch);
    if (st.mtimeMs > epoch * 1000) await fs.lutimes(p, t, t);
  }
  const st = await fs.lstat(dir);
  if (st.mtimeMs > epoch * 1000) await fs.lutimes(dir, t, t);
}
