import fs from 'node:fs/promises';
import { createReadStream, createWriteStream } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable, Writable } from 'node:stream';
import { SlipwayError } from '../errors.js';
import { emptyContainerConfig, DOCKER_VERSION, type ImageJson } from '../image-config.js';
import { EMPTY_LAYER_DIFF_ID, type ImageId, type StoreLayout } from '../store/layout.js';
import { hasImage, makeTmpDir, readDiffId, registerImage } from '../store/graph.js';
import { imageConfigDoc, type ImageConfigDocJson } from '../store/inspect.js';
import { packLayer, layerSize } from '../snapshot/pack.js';
import { unpackLayer } from '../snapshot/unpack.js';
import { decompressStream } from '../snapshot/tar-read.js';
import { sha256Hex } from '../fs.js';
import { canonicalJson } from '../cache/key.js';
import { isDigest } from './manifest.js';
import { badContainerConfig, type ChainEntry, type HistoryJson } from './saved-chain.js';
import { MAX_JSON_DEPTH, nestsDeeperThan } from './archive-members.js';

/**
 * The shared path by which images arrive from elsewhere (load, OCI load, pull): a config
 * document becomes a parent chain of legacy images, one per history entry, whose ids are derived
 * from content (parent, history entry, diff id, and the config on the top one). The same image
 * therefore gets the same ids whether it was loaded or pulled, and what exists is not fetched again.
 */

export type { ChainEntry } from './saved-chain.js';

/** A layer unpacked into a folder on the store's filesystem, with its original tar beside it. */
export interface PreparedLayer {
  layerDir: string;
  diffId: string;
  tarFile: string;
}

/** Validates the parts of an untrusted config document that the store relies on. */
export function checkConfigDoc(doc: unknown): ImageConfigDocJson {
  const d = doc as Partial<ImageConfigDocJson> | null;
  if (!d || typeof d !== 'object') throw new SlipwayError('ERR_BAD_ARCHIVE', 'invalid image config: not an object');
  // Every recursive walk after this (canonical JSON, stringify) would overflow on absurd nesting.
  if (nestsDeeperThan(d, MAX_JSON_DEPTH)) throw new SlipwayError('ERR_BAD_ARCHIVE', `invalid image config: nests more than ${MAX_JSON_DEPTH} deep`);
  const ids = d.rootfs?.diff_ids;
  if (!Array.isArray(ids) || !ids.every(isDigest)) throw new SlipwayError('ERR_BAD_ARCHIVE', 'invalid image config: rootfs.diff_ids must be sha256 digests');
  if (d.history !== undefined && d.history !== null && !(Array.isArray(d.history) && d.history.every((h) => h && typeof h === 'object'))) {
    throw new SlipwayError('ERR_BAD_ARCHIVE', 'invalid image config: bad history');
  }
  const why = badContainerConfig(d.config);
  if (why) throw new SlipwayError('ERR_BAD_ARCHIVE', `invalid image config: config: ${why}`);
  if (d.history?.some((h) => (h.created !== undefined && typeof h.created !== 'string') || (h.created_by !== undefined && typeof h.created_by !== 'string'))) {
    throw new SlipwayError('ERR_BAD_ARCHIVE', 'invalid image config: bad history');
  }
  return d as ImageConfigDocJson;
}

/**
 * Plans the chain for a config document. History entries without `empty_layer` must match
 * `diff_ids` one to one; when they do not (or there is no history), one entry per layer stands
 * in, as for a config without history. A config with no layer at all gets one empty image.
 */
export function planChain(doc: ImageConfigDocJson): ChainEntry[] {
  const diffIds = doc.rootfs.diff_ids;
  let history: HistoryJson[] = Array.isArray(doc.history) ? doc.history : [];
  if (history.length === 0 || history.filter((h) => !h.empty_layer).length !== diffIds.length) {
    history = diffIds.map(() => ({ created: doc.created }));
  }
  if (history.length === 0) history = [{ created: doc.created, empty_layer: true }];
  const plan: ChainEntry[] = [];
  let parent: ImageId | undefined;
  let li = 0;
  for (let i = 0; i < history.length; i++) {
    const h = history[i]!;
    const last = i === history.length - 1;
    const layerIndex = h.empty_layer ? undefined : li++;
    const diffId = layerIndex === undefined ? EMPTY_LAYER_DIFF_ID : diffIds[layerIndex]!;
    // Unchanged from the first `load`: ids must stay stable across versions.
    const id = sha256Hex(canonicalJson({ parent: parent ?? '', history: h, diffId, config: last ? doc.config : null })) as ImageId;
    plan.push({ id, parent, history: h, layerIndex, diffId, last });
    parent = id;
  }
  return plan;
}

/** The plan's entries whose image is not in the store yet. */
export async function missingEntries(layout: StoreLayout, plan: readonly ChainEntry[]): Promise<ChainEntry[]> {
  const out: ChainEntry[] = [];
  for (const e of plan) if (!(await hasImage(layout, e.id))) out.push(e);
  return out;
}

function chainImageJson(doc: ImageConfigDocJson, e: ChainEntry, size: number): ImageJson {
  if (e.json) {
    const { parent: _parent, throwaway: _throwaway, ...rest } = e.json;
    return { ...rest, id: e.id, ...(e.parent ? { parent: e.parent } : {}), Size: size, ...(e.layerIndex === undefined ? { throwaway: true } : {}) };
  }
  const h = e.history;
  return {
    id: e.id, ...(e.parent ? { parent: e.parent } : {}), created: h.created ?? doc.created ?? new Date(0).toISOString(),
    ...(h.comment ? { comment: h.comment } : {}), ...(h.author ? { author: h.author } : {}),
    container_config: { ...emptyContainerConfig(), Cmd: h.created_by ? [h.created_by] : null },
    docker_version: doc.docker_version ?? DOCKER_VERSION, config: { ...emptyContainerConfig(), ...(doc.config ?? {}) },
    architecture: doc.architecture ?? 'amd64', os: doc.os ?? 'linux', Size: size,
    ...(h.empty_layer ? { throwaway: true } : {}),
  };
}

/**
 * Registers every missing image of `plan`, base first. `layers` holds the prepared layer of each
 * missing entry that has one (keyed by layer index); each is checked against the config's diff
 * id. The top image keeps `configBytes` as `config.json`. Returns the top id and the ids of the
 * images added (base first), so a failed load can take them away again.
 */
export async function registerChain(layout: StoreLayout, doc: ImageConfigDocJson, plan: readonly ChainEntry[], opts: { layers: ReadonlyMap<number, PreparedLayer>; configBytes?: Uint8Array }): Promise<{ top: ImageId; added: ImageId[] }> {
  const added: ImageId[] = [];
  for (const e of plan) {
    if (await hasImage(layout, e.id)) continue;
    let layerDir: string;
    let tarFile: string | undefined;
    let scratch: string | undefined;
    if (e.layerIndex === undefined) {
      scratch = await makeTmpDir(layout, 'layer');
      layerDir = path.join(scratch, 'layer');
      await fs.mkdir(layerDir, { mode: 0o755 });
    } else {
      const p = opts.layers.get(e.layerIndex);
      if (!p) throw new SlipwayError('ERR_INTERNAL', `registerChain: layer ${e.layerIndex} was not prepared`);
      if (p.diffId !== e.diffId) throw new SlipwayError('ERR_BAD_ARCHIVE', `invalid image: layer ${e.layerIndex} has diff id ${p.diffId}, the config says ${e.diffId}`);
      ({ layerDir, tarFile } = p);
    }
    const size = await layerSize(layerDir);
    const ok = await registerImage(layout, {
      id: e.id, json: chainImageJson(doc, e, size), layerDir, diffId: e.diffId, layerSize: size,
      ...(tarFile ? { originalTar: tarFile } : {}), ...(e.last && opts.configBytes ? { configJson: opts.configBytes } : {}),
    });
    if (ok) added.push(e.id);
    if (scratch) await fs.rm(scratch, { recursive: true, force: true });
  }
  return { top: plan[plan.length - 1]!.id, added };
}

/**
 * Decompresses a layer (gzip, bzip2, xz or plain, sniffed) into `<dir>/layer-*.tar` (kept: its
 * bytes are what the diff id names), then unpacks that file with the safe applier.
 */
export async function unpackKeepingTar(input: NodeJS.ReadableStream, layerDir: string, dir: string): Promise<{ diffId: string; tarFile: string }> {
  const tarFile = path.join(dir, `layer-${path.basename(path.dirname(layerDir))}.tar`);
  const { stream } = await decompressStream(input);
  await pipeline(stream as Readable, createWriteStream(tarFile));
  const { diffId } = await unpackLayer(createReadStream(tarFile), layerDir);
  return { diffId, tarFile };
}

/**
 * The image's config document as bytes: exactly as pulled or loaded when the store kept them,
 * else serialized once from the chain. Its sha256 is the config digest (Docker's image id).
 */
export async function imageConfigBytes(layout: StoreLayout, id: ImageId): Promise<Buffer> {
  try {
    return await fs.readFile(layout.configJson(id));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  return Buffer.from(JSON.stringify(await imageConfigDoc(layout, id)));
}

/**
 * Writes the layer of image `id` as an uncompressed tar to `out` (which is ended): the kept
 * original bytes of an imported/loaded/pulled layer, else our deterministic packing of `layer/`.
 * Fails when the bytes do not hash to the recorded diff id, since every manifest and config we
 * hand out names them by it.
 */
export async function writeLayerTar(layout: StoreLayout, id: ImageId, out: Writable): Promise<{ diffId: string; size: number }> {
  const want = await readDiffId(layout, id);
  let got: { diffId: string; size: number };
  const kept = layout.layerTar(id);
  if (await fs.stat(kept).then(() => true, () => false)) {
    const hash = createHash('sha256');
    let size = 0;
    await pipeline(createReadStream(kept), async function* (src: AsyncIterable<Buffer>) {
      for await (const chunk of src) {
        hash.update(chunk);
        size += chunk.length;
        yield chunk;
      }
    }, out);
    got = { diffId: `sha256:${hash.digest('hex')}`, size };
  } else {
    got = await packLayer(layout.layerDir(id), out);
  }
  if (got.diffId !== want) {
    throw new SlipwayError('ERR_INTERNAL', `layer of image ${id.slice(0, 12)} packs to ${got.diffId}, but its recorded diff id is ${want}`);
  }
  return got;
}
