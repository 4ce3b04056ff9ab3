import fs from 'node:fs/promises';
import { createReadStream, createWriteStream } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import tarStream from 'tar-stream';
import { SlipwayError } from '../errors.js';
import { emptyContainerConfig, DOCKER_VERSION, type ContainerConfigJson, type ImageJson } from '../image-config.js';
import { StoreLayout, EMPTY_LAYER_DIFF_ID, type ImageId } from '../store/layout.js';
import { ensureStore, imageChain, makeTmpDir, registerImage, resolveImage, readLayerSize } from '../store/graph.js';
import { updateRepositories, listTags, readRepositories } from '../store/repositories.js';
import { parseReference, formatReference } from '../store/reference.js';
import { imageConfigDoc, type ImageConfigDocJson } from '../store/inspect.js';
import { packLayer, layerSize } from '../snapshot/pack.js';
import { unpackLayer, decompressStream } from '../snapshot/unpack.js';
import { sha256Hex } from '../fs.js';
import { canonicalJson } from '../cache/key.js';

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
    await registerImage(layout, { id, json, layerDir, diffId, layerSize: size, originalTar: tarFile });
    if (ref) await updateRepositories(layout, (r) => { (r.Repositories[ref.repository] ??= {})[ref.tag] = id; });
    return id;
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

/**
 * `save`: the `docker save` format — `manifest.json`, `repositories`, the config as
 * `<sha256>.json`, and `<layer id>/{VERSION,json,layer.tar}` per non-empty layer with overlay
 * whiteouts written as `.wh.` entries. skopeo and `docker load` read it.
 */
export async function saveImages(layout: StoreLayout, refs: string[], out: NodeJS.WritableStream): Promise<void> {
  const pack = tarStream.pack();
  const done = pipeline(pack, out as NodeJS.WritableStream & import('node:stream').Writable);
  const manifest: Array<{ Config: string; RepoTags: string[] | null; Layers: string[] }> = [];
  const repositories: Record<string, Record<string, string>> = {};
  const written = new Set<string>();
  const tags = listTags(await readRepositories(layout));
  const add = (name: string, data: string | Buffer) => new Promise<void>((res, rej) => {
    pack.entry({ name, mode: 0o644, mtime: new Date(0), uid: 0, gid: 0 }, data, (err) => (err ? rej(err) : res()));
  });
  const tmp = await makeTmpDir(layout, 'save');
  try {
    for (const ref of refs) {
      const id = await resolveImage(layout, ref);
      const doc = await imageConfigDoc(layout, id);
      const configText = JSON.stringify(doc);
      const configName = `${sha256Hex(configText)}.json`;
      if (!written.has(configName)) {
        await add(configName, configText);
        written.add(configName);
      }
      const layers: string[] = [];
      for (const c of (await imageChain(layout, id)).reverse()) {
        if (c.json.throwaway) continue;
        const name = `${c.id}/layer.tar`;
        layers.push(name);
        if (written.has(name)) continue;
        written.add(name);
        await add(`${c.id}/VERSION`, '1.0');
        await add(`${c.id}/json`, JSON.stringify({ id: c.id, ...(c.json.parent ? { parent: c.json.parent } : {}), created: c.json.created, container_config: c.json.container_config, config: c.json.config, os: c.json.os }));
        // tar-stream needs the size up front: pack the layer to a temp file first, unless the
        // layer came from elsewhere and its original bytes are kept (their sha256 is the diff id).
        const kept = layout.layerTar(c.id);
        const hasKept = await fs.stat(kept).then(() => true, () => false);
        const file = hasKept ? kept : path.join(tmp, `${c.id}.tar`);
        if (!hasKept) await packLayer(layout.layerDir(c.id), createWriteStream(file));
        const st = await fs.stat(file);
        await new Promise<void>((res, rej) => {
          const entry = pack.entry({ name, size: st.size, mode: 0o644, mtime: new Date(0), uid: 0, gid: 0 }, (err) => (err ? rej(err) : res()));
          createReadStream(file).pipe(entry);
        });
        if (!hasKept) await fs.rm(file);
      }
      let repoTags: string[] = [];
      try {
        const r = parseReference(ref);
        if (!/^[0-9a-f]{12,64}$/.test(ref)) repoTags = [formatReference(r)];
      } catch {
        repoTags = [];
      }
      if (repoTags.length === 0) repoTags = tags.filter((t) => t.id === id).map((t) => `${t.repository}:${t.tag}`);
      for (const t of repoTags) {
        const r = parseReference(t);
        (repositories[r.repository] ??= {})[r.tag] = layers.length ? layers[layers.length - 1]!.split('/')[0]! : id;
      }
      manifest.push({ Config: configName, RepoTags: repoTags.length ? repoTags : null, Layers: layers });
    }
    await add('manifest.json', JSON.stringify(manifest));
    await add('repositories', JSON.stringify(repositories));
    pack.finalize();
    await done;
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

/**
 * Decompresses a layer into `<dir>/layer.tar` (kept: its bytes are what the diff id names), then
 * unpacks that file with the safe applier.
 */
async function unpackKeepingTar(input: NodeJS.ReadableStream, layerDir: string, dir: string): Promise<{ diffId: string; tarFile: string }> {
  const tarFile = path.join(dir, `layer-${path.basename(path.dirname(layerDir))}.tar`);
  const { stream } = await decompressStream(input);
  await pipeline(stream as Readable, createWriteStream(tarFile));
  const { diffId } = await unpackLayer(createReadStream(tarFile), layerDir);
  return { diffId, tarFile };
}

/** Extracts the outer `docker save` archive (regular files only, names checked) into `dir`. */
async function extractOuter(input: NodeJS.ReadableStream, dir: string): Promise<Map<string, string>> {
  const links = new Map<string, string>();
  const extract = tarStream.extract();
  const work = (async () => {
    for await (const entry of extract) {
      const h = entry.header;
      const name = path.posix.normalize(h.name.replace(/^\.?\/+/, ''));
      if (name.startsWith('..') || path.posix.isAbsolute(name)) throw new SlipwayError('ERR_BAD_ARCHIVE', `invalid archive entry: ${h.name}`);
      if (h.type === 'symlink' && h.linkname) {
        links.set(name, path.posix.normalize(path.posix.join(path.posix.dirname(name), h.linkname)));
      } else if (h.type === 'file') {
        const target = path.join(dir, ...name.split('/'));
        await fs.mkdir(path.dirname(target), { recursive: true });
        await pipeline(entry, createWriteStream(target));
        continue;
      }
      entry.resume();
    }
  })();
  await pipeline(input as Readable, extract).catch((e) => { throw new SlipwayError('ERR_BAD_ARCHIVE', `invalid tar archive: ${(e as Error).message}`); });
  await work;
  return links;
}

/**
 * `load`: reads a `docker save` archive, unpacks each layer with the safe applier, verifies
 * every diff id against the config, and registers the chain (one image per history entry).
 */
export async function loadImages(layout: StoreLayout, input: NodeJS.ReadableStream): Promise<Array<{ id: ImageId; tags: string[] }>> {
  await ensureStore(layout);
  const tmp = await makeTmpDir(layout, 'load');
  try {
    const links = await extractOuter(input, path.join(tmp, 'x'));
    const file = (name: string) => path.join(tmp, 'x', ...(links.get(name) ?? name).split('/'));
    let manifest: Array<{ Config: string; RepoTags: string[] | null; Layers: string[] }>;
    try {
      manifest = JSON.parse(await fs.readFile(file('manifest.json'), 'utf8'));
    } catch {
      throw new SlipwayError('ERR_BAD_ARCHIVE', 'invalid archive: no manifest.json (only the docker save format is supported)');
    }
    const results: Array<{ id: ImageId; tags: string[] }> = [];
    for (const m of manifest) {
      const doc = JSON.parse(await fs.readFile(file(m.Config), 'utf8')) as ImageConfigDocJson;
      const history: ImageConfigDocJson['history'] = doc.history?.length ? doc.history : m.Layers.map(() => ({ created: doc.created }));
      let parent: ImageId | undefined;
      let li = 0;
      for (let i = 0; i < history.length; i++) {
        const h = history[i]!;
        const last = i === history.length - 1;
        const layerDir = path.join(await makeTmpDir(layout, 'layer'), 'layer');
        await fs.mkdir(layerDir, { mode: 0o755 });
        let diffId = EMPTY_LAYER_DIFF_ID;
        let tarFile: string | undefined;
        if (!h.empty_layer) {
          const name = m.Layers[li];
          if (!name) throw new SlipwayError('ERR_BAD_ARCHIVE', 'invalid archive: fewer layers than history entries');
          ({ diffId, tarFile } = await unpackKeepingTar(createReadStream(file(name)), layerDir, path.dirname(layerDir)));
          const want = doc.rootfs.diff_ids[li];
          if (want !== diffId) throw new SlipwayError('ERR_BAD_ARCHIVE', `invalid archive: layer ${name} has diff id ${diffId}, the config says ${want}`);
          li++;
        }
        const config = last ? doc.config : { ...doc.config };
        const id = sha256Hex(canonicalJson({ parent: parent ?? '', history: h, diffId, config: last ? doc.config : null })) as ImageId;
        const size = await layerSize(layerDir);
        const json: ImageJson = {
          id, ...(parent ? { parent } : {}), created: h.created, ...(h.comment ? { comment: h.comment } : {}),
          container_config: { ...emptyContainerConfig(), Cmd: h.created_by ? [h.created_by] : null },
          docker_version: doc.docker_version ?? DOCKER_VERSION, config, architecture: doc.architecture, os: doc.os, Size: size,
          ...(h.empty_layer ? { throwaway: true } : {}),
        };
        await registerImage(layout, { id, json, layerDir, diffId, layerSize: size, ...(tarFile ? { originalTar: tarFile } : {}) });
        await fs.rm(path.dirname(layerDir), { recursive: true, force: true });
        parent = id;
      }
      if (!parent) throw new SlipwayError('ERR_BAD_ARCHIVE', 'invalid archive: image without layers');
      const top = parent;
      const tags = m.RepoTags ?? [];
      const refs = tags.map(parseReference);
      if (refs.length) await updateRepositories(layout, (r) => { for (const ref of refs) (r.Repositories[ref.repository] ??= {})[ref.tag] = top; });
      results.push({ id: top, tags: refs.map(formatReference) });
    }
    return results;
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

export { readLayerSize, Readable };
