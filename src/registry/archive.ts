import fs from 'node:fs/promises';
import { createReadStream, createWriteStream } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import tarStream from 'tar-stream';
import { emptyContainerConfig, DOCKER_VERSION, type ContainerConfigJson, type ImageJson } from '../image-config.js';
import { StoreLayout, type ImageId } from '../store/layout.js';
import { discardImage, ensureStore, imageChain, makeTmpDir, registerImage, resolveImage, readLayerSize } from '../store/graph.js';
import { updateRepositories, listTags, readRepositories } from '../store/repositories.js';
import { parseReference, formatReference } from '../store/reference.js';
import { layerSize } from '../snapshot/pack.js';
import { sha256Hex, exists } from '../fs.js';
import { canonicalJson } from '../cache/key.js';
import { imageConfigBytes, unpackKeepingTar, writeLayerTar } from './chain.js';
import { CHAIN_FIELD, savedChain } from './saved-chain.js';

/**
 * `import`: a root filesystem tarball (plain or compressed) becomes a one-layer image; its id is
 * sha256 over the diff id and the config, so the same tarball gives the same id everywhere.
 */
export async function importImage(layout: StoreLayout, input: NodeJS.ReadableStream, opts: { config?: ContainerConfigJson; tag?: string; comment?: string }): Promise<ImageId> {
  const ref = opts.tag ? parseReference(opts.tag) : undefined;
  await ensureStore(layout);
  const tmp = await makeTmpDir(layout, 'import');
  try {
    const layerDir = path.join(tmp, 'layer');
    await fs.mkdir(layerDir, { mode: 0o755 });
    const { diffId, tarFile } = await unpackKeepingTar(input, layerDir, tmp);
    const config = opts.config ?? emptyContainerConfig();
    const comment = opts.comment ?? 'Imported from -';
    const id = sha256Hex(canonicalJson({ diffIds: [diffId], config, comment })) as ImageId;
    const size = await layerSize(layerDir);
    const json: ImageJson = {
      id, comment, created: new Date().toISOString(), container_config: emptyContainerConfig(), docker_version: DOCKER_VERSION,
      config, architecture: 'amd64', os: 'linux', Size: size,
    };
    const added = await registerImage(layout, { id, json, layerDir, diffId, layerSize: size, originalTar: tarFile });
    try {
      if (ref) await updateRepositories(layout, (r) => { (r.Repositories[ref.repository] ??= {})[ref.tag] = id; });
    } catch (e) {
      // A tag that cannot be written (a full disk) must not leave an untagged image behind.
      if (added) await discardImage(layout, id).catch(() => undefined);
      throw e;
    }
    return id;
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

/** The `docker save` tar being written: its entries, each name once. */
class SaveTar {
  readonly written = new Set<string>();

  constructor(private readonly pack: tarStream.Pack, private readonly tmp: string) {}

  add(name: string, data: string | Buffer): Promise<void> {
    return new Promise<void>((res, rej) => {
      this.pack.entry({ name, mode: 0o644, mtime: new Date(0), uid: 0, gid: 0 }, data, (err) => (err ? rej(err) : res()));
    });
  }

  async addOnce(name: string, data: string | Buffer): Promise<void> {
    if (this.written.has(name)) return;
    this.written.add(name);
    await this.add(name, data);
  }

  /** `<id>/{VERSION,json,layer.tar}` of one image with a layer; returns the layer's name. */
  async addLayer(layout: StoreLayout, c: { id: ImageId; json: ImageJson }): Promise<string> {
    const name = `${c.id}/layer.tar`;
    if (this.written.has(name)) return name;
    this.written.add(name);
    await this.add(`${c.id}/VERSION`, '1.0');
    await this.add(`${c.id}/json`, JSON.stringify({ id: c.id, ...(c.json.parent ? { parent: c.json.parent } : {}), created: c.json.created, container_config: c.json.container_config, config: c.json.config, os: c.json.os }));
    // tar-stream needs the size up front: write the layer to a temp file first, unless the
    // layer came from elsewhere and its original bytes are kept (their sha256 is the diff id).
    const kept = layout.layerTar(c.id);
    const hasKept = await exists(kept);
    const file = hasKept ? kept : path.join(this.tmp, `${c.id}.tar`);
    if (!hasKept) await writeLayerTar(layout, c.id, createWriteStream(file));
    const st = await fs.stat(file);
    await new Promise<void>((res, rej) => {
      const entry = this.pack.entry({ name, size: st.size, mode: 0o644, mtime: new Date(0), uid: 0, gid: 0 }, (err) => (err ? rej(err) : res()));
      // pipeline, not pipe: an entry destroyed with the pack (reader gone) must not emit an unhandled 'error'.
      pipeline(createReadStream(file), entry).catch(rej);
    });
    if (!hasKept) await fs.rm(file);
    return name;
  }
}

/** The tags an archive gives `ref`: itself when it names a tag, else every tag of the image. */
function repoTagsFor(ref: string, id: ImageId, tags: ReturnType<typeof listTags>): string[] {
  try {
    const r = parseReference(ref);
    if (!/^[0-9a-f]{12,64}$/.test(ref)) return [formatReference(r)];
  } catch {
    // an id or id prefix
  }
  return tags.filter((t) => t.id === id).map((t) => `${t.repository}:${t.tag}`);
}

/**
 * `save`: the `docker save` format — `manifest.json`, `repositories`, the config as
 * `<sha256>.json`, and `<layer id>/{VERSION,json,layer.tar}` per non-empty layer with overlay
 * whiteouts written as `.wh.` entries; plus each image's chain (saved-chain.ts), so that load
 * gives every image back its id. skopeo and `docker load` read it.
 */
export async function saveImages(layout: StoreLayout, refs: string[], out: NodeJS.WritableStream): Promise<void> {
  const pack = tarStream.pack();
  // A reader gone early (EPIPE) or a failing disk is the error to report, not the pack's
  // "already finalized or destroyed" that follows it.
  let outFailed: unknown;
  const done = pipeline(pack, out as NodeJS.WritableStream & import('node:stream').Writable);
  done.catch((e: unknown) => { outFailed = e; }); // awaited at the end; must not be an unhandled rejection
  const manifest: Array<{ Config: string; RepoTags: string[] | null; Layers: string[]; [CHAIN_FIELD]: string }> = [];
  const repositories: Record<string, Record<string, string>> = {};
  const tags = listTags(await readRepositories(layout));
  const tmp = await makeTmpDir(layout, 'save');
  const tar = new SaveTar(pack, tmp);
  try {
    for (const ref of refs) {
      const id = await resolveImage(layout, ref);
      const configText = await imageConfigBytes(layout, id);
      const configName = `${sha256Hex(configText)}.json`;
      await tar.addOnce(configName, configText);
      const chain = Buffer.from(JSON.stringify(await savedChain(layout, id)));
      const chainName = `${sha256Hex(chain)}.chain.json`;
      await tar.addOnce(chainName, chain);
      const layers: string[] = [];
      for (const c of (await imageChain(layout, id)).reverse()) if (!c.json.throwaway) layers.push(await tar.addLayer(layout, c));
      const repoTags = repoTagsFor(ref, id, tags);
      for (const t of repoTags) {
        const r = parseReference(t);
        (repositories[r.repository] ??= {})[r.tag] = layers.length ? layers[layers.length - 1]!.split('/')[0]! : id;
      }
      manifest.push({ Config: configName, RepoTags: repoTags.length ? repoTags : null, Layers: layers, [CHAIN_FIELD]: chainName });
    }
    await tar.add('manifest.json', JSON.stringify(manifest));
    await tar.add('repositories', JSON.stringify(repositories));
    pack.finalize();
    await done;
  } catch (e) {
    pack.destroy();
    throw outFailed ?? e;
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

export { loadImages } from './load.js';
export { readLayerSize, Readable };
