/**
 * `build --cache-from IMAGE` as Docker's legacy builder reads it: an image's chain serves as a
 * cache. A step misses the local cache; if a source image's history starts with the history of
 * the step's parent (same `created_by` and empty-layer flags, same layer diff ids) and its next
 * entry was made by the same command (`created_by` equal to the step's Cmd), that entry's layer
 * is the step's result. The step's image is then committed as if it had run (same id as a run
 * that made that layer). A source is a local image, or a registry reference that the store lacks:
 * then only its manifest and config are fetched up front, and a layer is downloaded only when a
 * step hits it.
 */
import fs from 'node:fs/promises';
import { createReadStream, createWriteStream } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import crypto from 'node:crypto';
import { SlipwayError } from '../errors.js';
import { DOCKER_VERSION, type ContainerConfigJson, type ImageJson } from '../image-config.js';
import type { RemoteCache } from '../scheduler/remote-cache.js';
import { EMPTY_LAYER_DIFF_ID, type ImageId, type StoreLayout } from '../store/layout.js';
import { hasImage, imageChain, makeTmpDir, readDiffId, registerImage, resolveImage } from '../store/graph.js';
import { createdBy } from '../store/inspect.js';
import { packLayer, layerSize } from '../snapshot/pack.js';
import { unpackLayer } from '../snapshot/unpack.js';
import { decompressStream } from '../snapshot/tar-read.js';
import { sha256Hex } from '../fs.js';

/** One history entry, as far as matching needs it. */
export interface SourceEntry { createdBy: string; empty: boolean; created?: string }

/**
 * An image whose chain may serve as cache. `layer` unpacks layer `k` (a diff id index) into
 * `dir` and returns the layer's tar (beside `dir`), whose digest is the diff id, to keep.
 */
export interface CacheSource {
  name: string;
  history: SourceEntry[];
  diffIds: string[];
  layer(k: number, dir: string): Promise<string>;
}

/** A local image as a source: its chain, base first; a layer is copied by packing and unpacking it. */
export async function localSource(layout: StoreLayout, name: string, id: ImageId): Promise<CacheSource> {
  const chain = (await imageChain(layout, id)).reverse();
  const withLayer = chain.filter((c) => !c.json.throwaway);
  return {
    name,
    history: chain.map((c) => ({ createdBy: createdBy(c.json), empty: c.json.throwaway === true, created: c.json.created })),
    diffIds: await Promise.all(withLayer.map((c) => readDiffId(layout, c.id))),
    async layer(k, dir) {
      // The layer's original tar when the store kept one (pulled, loaded), else our own packing,
      // which is deterministic: either way its digest is the recorded diff id.
      const src = withLayer[k]!.id;
      const tar = path.join(path.dirname(dir), 'layer.tar');
      const kept = await fs.copyFile(layout.layerTar(src), tar).then(() => true, () => false);
      if (!kept) await packLayer(layout.layerDir(src), createWriteStream(tar));
      const got = await unpackLayer(createReadStream(tar), dir);
      const want = await readDiffId(layout, src);
      if (got.diffId !== want) throw new SlipwayError('ERR_INTERNAL', `--cache-from ${name}: layer of ${src} packs to ${got.diffId}, recorded ${want}`);
      return tar;
    },
  };
}

/** A layer blob (any compression) unpacked into `dir`; its diff id must be `diffId`. Returns the plain tar. */
export async function unpackBlob(file: string, dir: string, diffId: string, what: string): Promise<string> {
  const { stream } = await decompressStream(createReadStream(file));
  const tar = path.join(path.dirname(dir), 'layer.tar');
  await pipeline(stream as NodeJS.ReadableStream, createWriteStream(tar));
  const got = await unpackLayer(createReadStream(tar), dir);
  if (got.diffId !== diffId) throw new SlipwayError('ERR_REGISTRY', `${what}: the layer has diff id ${got.diffId}, the config says ${diffId}`);
  return tar;
}

/** The parent's chain in a source's terms. */
async function parentChain(layout: StoreLayout, parent: ImageId | null): Promise<{ history: SourceEntry[]; diffIds: string[] }> {
  if (!parent) return { history: [], diffIds: [] };
  const s = await localSource(layout, '', parent);
  return { history: s.history, diffIds: s.diffIds };
}

function continues(s: CacheSource, p: { history: SourceEntry[]; diffIds: string[] }, cmd: string): SourceEntry | undefined {
  const n = p.history.length;
  if (s.history.length <= n || s.diffIds.length < p.diffIds.length) return undefined;
  for (let i = 0; i < n; i++) if (s.history[i]!.createdBy !== p.history[i]!.createdBy || s.history[i]!.empty !== p.history[i]!.empty) return undefined;
  for (let i = 0; i < p.diffIds.length; i++) if (s.diffIds[i] !== p.diffIds[i]) return undefined;
  const next = s.history[n]!;
  return next.createdBy === cmd ? next : undefined;
}

/** The RemoteCache the scheduler consults on a local miss. */
export class CacheFrom implements RemoteCache {
  readonly source = 'cache-from' as const;
  private resolved: Promise<CacheSource[]> | undefined;

  constructor(private readonly layout: StoreLayout, private readonly load: () => Promise<CacheSource[]>) {}

  private sources(): Promise<CacheSource[]> {
    return (this.resolved ??= this.load());
  }

  async fetch(preimage: string, parent: ImageId | null, key: string): Promise<{ id: ImageId; durationMs: number } | undefined> {
    const pre = JSON.parse(preimage) as { config: ContainerConfigJson; result: ContainerConfigJson };
    const cmd = (pre.config.Cmd ?? []).join(' ');
    const sources = await this.sources();
    if (sources.length === 0) return undefined;
    const p = await parentChain(this.layout, parent);
    for (const s of sources) {
      const entry = continues(s, p, cmd);
      if (!entry) continue;
      const k = p.diffIds.length;
      const diffId = entry.empty ? EMPTY_LAYER_DIFF_ID : s.diffIds[k]!;
      const id = sha256Hex(`${parent ?? ''}\n${key}\n${diffId}`) as ImageId;
      if (!(await hasImage(this.layout, id))) await this.commit(s, entry, k, { id, parent, diffId, pre });
      return { id, durationMs: 0 };
    }
    return undefined;
  }

  private async commit(s: CacheSource, entry: SourceEntry, k: number, a: { id: ImageId; parent: ImageId | null; diffId: string; pre: { config: ContainerConfigJson; result: ContainerConfigJson } }): Promise<void> {
    const tmp = await makeTmpDir(this.layout, 'cache-from');
    try {
      const layerDir = path.join(tmp, 'layer');
      let originalTar: string | undefined;
      if (entry.empty) await fs.mkdir(layerDir, { mode: 0o755 });
      else originalTar = await s.layer(k, layerDir);
      const size = entry.empty ? 0 : await layerSize(layerDir);
      const container = crypto.randomBytes(32).toString('hex');
      const json: ImageJson = {
        id: a.id, ...(a.parent ? { parent: a.parent } : {}), created: entry.created ?? new Date().toISOString(), container,
        container_config: { ...a.pre.config, Hostname: container.slice(0, 12), Image: a.parent ?? '' },
        docker_version: DOCKER_VERSION, config: { ...a.pre.result, Hostname: '', Image: a.parent ?? '' },
        architecture: 'amd64', os: 'linux', Size: size, ...(entry.empty ? { throwaway: true } : {}),
      };
      await registerImage(this.layout, { id: a.id, json, layerDir, diffId: a.diffId, layerSize: size, ...(originalTar ? { originalTar } : {}) });
    } finally {
      await fs.rm(tmp, { recursive: true, force: true });
    }
  }

  async lease(): Promise<{ release(): Promise<void> }> {
    return { release: async () => undefined };
  }

  async publish(): Promise<void> {
    // Nothing is shared beyond this store.
  }
}

/** A name the store has, as a source; undefined when the store lacks it. */
export async function localSourceIfAny(layout: StoreLayout, name: string): Promise<CacheSource | undefined> {
  try {
    return await localSource(layout, name, await resolveImage(layout, name));
  } catch (e) {
    if (e instanceof SlipwayError && e.code === 'ERR_IMAGE_NOT_FOUND') return undefined;
    throw e;
  }
}
