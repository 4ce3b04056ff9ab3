import fs from 'node:fs/promises';
import path from 'node:path';
import { SlipwayError } from '../errors.js';
import type { ImageId, StoreLayout } from '../store/layout.js';
import { parseReference, type Reference } from '../store/reference.js';
import type { ImageConfigDocJson } from '../store/inspect.js';
import { parseArchiveJson } from './archive-members.js';
import { checkConfigDoc, missingEntries, planChain, unpackKeepingTar, type ChainEntry, type PreparedLayer } from './chain.js';
import { checkAgainstStore, restoreChain } from './saved-chain.js';

/**
 * The steps every archive format shares on its way into the store (docker save, OCI layout):
 * parse and check a config, plan its chain (with the saved ids when the archive has them),
 * unpack the layers the store lacks. Nothing here touches the store's images; `commitImages`
 * in load.ts does, all at once.
 */

/** One image of an archive: verified, its missing layers unpacked, not in the store yet. */
export interface PreparedImage {
  doc: ImageConfigDocJson;
  plan: ChainEntry[];
  configBytes: Buffer;
  layers: Map<number, PreparedLayer>;
  tags: Reference[];
}

/** Layers unpacked for this load, by the id of the image they belong to (images may share them). */
export type UnpackedLayers = Map<ImageId, PreparedLayer>;

/** The `RepoTags` of an item, parsed (a bad one fails the whole load before anything is added). */
export function parseTags(tags: unknown, what: string): Reference[] {
  if (tags === undefined || tags === null) return [];
  if (!Array.isArray(tags) || !tags.every((t) => typeof t === 'string')) throw new SlipwayError('ERR_BAD_ARCHIVE', `invalid archive: ${what}: RepoTags must be a list of names`);
  return tags.map((t: string) => parseReference(t));
}

/** Reads, checks and plans one config; restores the saved ids when the archive carries them. */
export async function planItem(layout: StoreLayout, configBytes: Buffer, what: string, saved: unknown): Promise<{ doc: ImageConfigDocJson; plan: ChainEntry[] }> {
  const doc = checkConfigDoc(parseArchiveJson(configBytes, what));
  let plan = planChain(doc);
  if (saved !== undefined) plan = restoreChain(plan, doc, saved);
  await checkAgainstStore(layout, plan);
  return { doc, plan };
}

/**
 * Unpacks the layers of `plan` the store lacks (once per image id across the load) from the
 * streams `open` gives, checking each against the config's diff id.
 */
export async function unpackMissing(layout: StoreLayout, plan: readonly ChainEntry[], ctx: { tmp: string; unpacked: UnpackedLayers }, open: (layerIndex: number) => NodeJS.ReadableStream, name: (layerIndex: number) => string): Promise<Map<number, PreparedLayer>> {
  const layers = new Map<number, PreparedLayer>();
  for (const e of await missingEntries(layout, plan)) {
    if (e.layerIndex === undefined) continue;
    let p = ctx.unpacked.get(e.id);
    if (!p) {
      const dir = await fs.mkdtemp(path.join(ctx.tmp, 'layer-'));
      const layerDir = path.join(dir, 'layer');
      await fs.mkdir(layerDir, { mode: 0o755 });
      const { diffId, tarFile } = await unpackKeepingTar(open(e.layerIndex), layerDir, dir);
      if (diffId !== e.diffId) throw new SlipwayError('ERR_BAD_ARCHIVE', `invalid archive: layer ${name(e.layerIndex)} has diff id ${diffId}, the config says ${e.diffId}`);
      p = { layerDir, diffId, tarFile };
      ctx.unpacked.set(e.id, p);
    }
    layers.set(e.layerIndex, p);
  }
  return layers;
}

