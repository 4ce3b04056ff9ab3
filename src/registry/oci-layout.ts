import fs from 'node:fs/promises';
import { createReadStream, createWriteStream } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Writable } from 'node:stream';
import tarStream from 'tar-stream';
import { SlipwayError } from '../errors.js';
import type { ImageId, StoreLayout } from '../store/layout.js';
import { ensureStore, imageChain, makeTmpDir, readDiffId, resolveImage } from '../store/graph.js';
import { listTags, readRepositories, updateRepositories } from '../store/repositories.js';
import { parseReference } from '../store/reference.js';
import { exists, sha256Hex, writeFileAtomic } from '../fs.js';
import { checkConfigDoc, imageConfigBytes, missingEntries, planChain, registerChain, unpackKeepingTar, writeLayerTar, type PreparedLayer } from './chain.js';
import { MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, MEDIA, isDigest, layerCompression, manifestBytes, parseManifest, selectManifest, type DescriptorJson, type ImageIndexJson, type ImageManifestJson } from './manifest.js';
import { localTag, parseRemoteReference, qualifiedRepository } from './remote-reference.js';

/**
 * OCI image layouts (image-spec image-layout.md): `oci-layout`, `index.json` and
 * `blobs/sha256/<hex>`. Written as moby 28's `save` writes them (uncompressed layers named by
 * their diff id, an OCI manifest per image, tags in `org.opencontainers.image.ref.name` and
 * `io.containerd.image.name`), optionally with `manifest.json` and `repositories` so the same
 * tar also loads into Docker's classic store.
 */

const REF_NAME = 'org.opencontainers.image.ref.name';
const IMAGE_NAME = 'io.containerd.image.name';
const LAYOUT_FILE = `${JSON.stringify({ imageLayoutVersion: '1.0.0' })}`;

/** Where a layout is written: a folder or a tar stream. */
interface LayoutSink {
  /** The size of an entry already written, if any. */
  sizeOf(name: string): Promise<number | undefined>;
  addBytes(name: string, data: Buffer): Promise<void>;
  addFile(name: string, file: string): Promise<void>;
}

function blobName(digest: string): string {
  return `blobs/sha256/${digest.slice('sha256:'.length)}`;
}

/** One image written into a layout. */
interface WrittenImage {
  manifest: DescriptorJson;
  configName: string;
  layerNames: string[];
  /** `name:tag` references (local names) the image is saved under; empty when untagged. */
  tags: string[];
}

/** The references `ref` stands for: itself when it names a tag, else every tag of the image. */
async function tagsFor(layout: StoreLayout, ref: string, id: ImageId): Promise<string[]> {
  if (!/^(sha256:)?[0-9a-f]{12,64}$/.test(ref)) {
    try {
      const r = parseReference(ref);
      return [`${r.repository}:${r.tag}`];
    } catch {
      // an id prefix
    }
  }
  return listTags(await readRepositories(layout)).filter((t) => t.id === id).map((t) => `${t.repository}:${t.tag}`).sort();
}

/** Writes one image's config, layers and manifest as blobs; returns its manifest descriptor. */
async function writeImage(layout: StoreLayout, id: ImageId, sink: LayoutSink, tmp: string): Promise<Omit<WrittenImage, 'tags'>> {
  const config = await imageConfigBytes(layout, id);
  const configDigest = `sha256:${sha256Hex(config)}`;
  if ((await sink.sizeOf(blobName(configDigest))) === undefined) await sink.addBytes(blobName(configDigest), config);
  const layers: DescriptorJson[] = [];
  for (const c of (await imageChain(layout, id)).reverse()) {
    if (c.json.throwaway) continue;
    const diffId = await readDiffId(layout, c.id);
    const name = blobName(diffId);
    let size = await sink.sizeOf(name);
    if (size === undefined) {
      // Uncompressed, as moby writes them: the blob's digest is the diff id, no recompression.
      const file = path.join(tmp, `${c.id}.tar`);
      ({ size } = await writeLayerTar(layout, c.id, createWriteStream(file)));
      await sink.addFile(name, file);
      await fs.rm(file, { force: true });
    }
    layers.push({ mediaType: MEDIA.ociLayer, digest: diffId, size });
  }
  const manifest: ImageManifestJson = {
    schemaVersion: 2, mediaType: MEDIA.ociManifest,
    config: { mediaType: MEDIA.ociConfig, digest: configDigest, size: config.length }, layers,
  };
  const bytes = manifestBytes(manifest);
  const digest = `sha256:${sha256Hex(bytes)}`;
  if ((await sink.sizeOf(blobName(digest))) === undefined) await sink.addBytes(blobName(digest), bytes);
  return { manifest: { mediaType: MEDIA.ociManifest, digest, size: bytes.length }, configName: blobName(configDigest), layerNames: layers.map((l) => blobName(l.digest)) };
}

/** Index entries for a written image: one per tag, annotated as moby and containerd do. */
function indexEntries(img: WrittenImage): DescriptorJson[] {
  if (img.tags.length === 0) return [img.manifest];
  return img.tags.map((t) => {
    const r = parseRemoteReference(t);
    return { ...img.manifest, annotations: { [IMAGE_NAME]: `${qualifiedRepository(r)}:${r.tag}`, [REF_NAME]: r.tag ?? 'latest' } };
  });
}

async function writeImages(layout: StoreLayout, refs: readonly string[], sink: LayoutSink): Promise<WrittenImage[]> {
  const tmp = await makeTmpDir(layout, 'oci');
  try {
    const out: WrittenImage[] = [];
    for (const ref of refs) {
      const id = await resolveImage(layout, ref);
      out.push({ ...(await writeImage(layout, id, sink, tmp)), tags: await tagsFor(layout, ref, id) });
    }
    return out;
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

/**
 * `save --format oci`: an OCI image layout as a tar, plus moby's `manifest.json` and
 * `repositories`, so both OCI tools (skopeo `oci-archive:`, umoci after extraction) and
 * `docker load` read it.
 */
export async function saveOciArchive(layout: StoreLayout, refs: readonly string[], out: NodeJS.WritableStream): Promise<void> {
  const pack = tarStream.pack();
  const done = pipeline(pack, out as Writable);
  done.catch(() => undefined);
  const sizes = new Map<string, number>();
  const header = (name: string, size: number) => ({ name, size, mode: 0o644, mtime: new Date(0), uid: 0, gid: 0 });
  const sink: LayoutSink = {
    sizeOf: async (name) => sizes.get(name),
    addBytes: (name, data) => new Promise<void>((res, rej) => {
      sizes.set(name, data.length);
      pack.entry(header(name, data.length), data, (err) => (err ? rej(err) : res()));
    }),
    addFile: async (name, file) => {
      const { size } = await fs.stat(file);
      sizes.set(name, size);
      await new Promise<void>((res, rej) => {
        const entry = pack.entry(header(name, size), (err) => (err ? rej(err) : res()));
        pipeline(createReadStream(file), entry as unknown as Writable).catch(rej);
      });
    },
  };
  try {
    await sink.addBytes('oci-layout', Buffer.from(LAYOUT_FILE));
    const images = await writeImages(layout, refs, sink);
    const index: ImageIndexJson = { schemaVersion: 2, mediaType: MEDIA.ociIndex, manifests: images.flatMap(indexEntries) };
    await sink.addBytes('index.json', Buffer.from(JSON.stringify(index)));
    const manifestJson = images.map((i) => ({ Config: i.configName, RepoTags: i.tags.length ? i.tags : null, Layers: i.layerNames }));
    await sink.addBytes('manifest.json', Buffer.from(JSON.stringify(manifestJson)));
    const repositories: Record<string, Record<string, string>> = {};
    for (const i of images) {
      const top = i.layerNames[i.layerNames.length - 1]?.slice('blobs/sha256/'.length);
      if (!top) continue;
      for (const t of i.tags) {
        const r = parseReference(t);
        (repositories[r.repository] ??= {})[r.tag] = top;
      }
    }
    if (Object.keys(repositories).length) await sink.addBytes('repositories', Buffer.from(JSON.stringify(repositories)));
    pack.finalize();
  } catch (e) {
    pack.destroy(e as Error);
    throw e;
  }
  await done;
}

/**
 * `export-oci`: writes the images into the OCI image layout folder `dir` (created, or added to
 * when it already is a layout: entries with the same `ref.name` are replaced). Blobs are written
 * atomically and `index.json` last, so a reader never sees an index naming a missing blob.
 */
export async function exportOciLayout(layout: StoreLayout, refs: readonly string[], dir: string): Promise<void> {
  let existing: DescriptorJson[] = [];
  const entries = await fs.readdir(dir).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return [] as string[];
    throw e;
  });
  if (entries.length > 0) {
    if (!entries.includes('oci-layout') || !entries.includes('index.json')) throw new SlipwayError('ERR_USAGE', `${dir} exists and is not an OCI image layout`);
    existing = (JSON.parse(await fs.readFile(path.join(dir, 'index.json'), 'utf8')) as ImageIndexJson).manifests ?? [];
  }
  await fs.mkdir(path.join(dir, 'blobs', 'sha256'), { recursive: true, mode: 0o755 });
  const sink: LayoutSink = {
    sizeOf: async (name) => (await fs.stat(path.join(dir, name)).catch(() => undefined))?.size,
    addBytes: (name, data) => writeFileAtomic(path.join(dir, name), data, 0o644),
    addFile: async (name, file) => {
      const tmp = path.join(dir, `${name}.tmp-${process.pid}`);
      await fs.copyFile(file, tmp);
      await fs.chmod(tmp, 0o644);
      await fs.rename(tmp, path.join(dir, name));
    },
  };
  const images = await writeImages(layout, refs, sink);
  const added = images.flatMap(indexEntries);
  const names = new Set(added.map((d) => d.annotations?.[REF_NAME]).filter((n) => n !== undefined));
  const kept = existing.filter((d) => !names.has(d.annotations?.[REF_NAME] ?? '\0'));
  const index: ImageIndexJson = { schemaVersion: 2, mediaType: MEDIA.ociIndex, manifests: [...kept, ...added] };
  await writeFileAtomic(path.join(dir, 'oci-layout'), LAYOUT_FILE, 0o644);
  await writeFileAtomic(path.join(dir, 'index.json'), JSON.stringify(index), 0o644);
}

/** Reads a blob of an untrusted layout into memory, checking size and digest. */
async function readBlob(dir: string, desc: DescriptorJson, cap: number): Promise<Buffer> {
  if (!isDigest(desc.digest)) throw new SlipwayError('ERR_BAD_ARCHIVE', `invalid OCI layout: bad digest ${JSON.stringify(desc.digest)}`);
  if (desc.size > cap) throw new SlipwayError('ERR_BAD_ARCHIVE', `invalid OCI layout: blob ${desc.digest} is too large (${desc.size} bytes)`);
  const bytes = await fs.readFile(path.join(dir, ...blobName(desc.digest).split('/'))).catch(() => {
    throw new SlipwayError('ERR_BAD_ARCHIVE', `invalid OCI layout: blob ${desc.digest} is missing`);
  });
  if (bytes.length !== desc.size || `sha256:${sha256Hex(bytes)}` !== desc.digest) throw new SlipwayError('ERR_BAD_ARCHIVE', `invalid OCI layout: blob ${desc.digest} does not match its digest`);
  return bytes;
}

/** Checks a (large) blob file's size and digest by streaming it. */
async function verifyBlobFile(file: string, desc: DescriptorJson): Promise<void> {
  const hash = createHash('sha256');
  let n = 0;
  try {
    for await (const chunk of createReadStream(file)) {
      hash.update(chunk as Buffer);
      n += (chunk as Buffer).length;
    }
  } catch {
    throw new SlipwayError('ERR_BAD_ARCHIVE', `invalid OCI layout: blob ${desc.digest} is missing`);
  }
  if (n !== desc.size || `sha256:${hash.digest('hex')}` !== desc.digest) throw new SlipwayError('ERR_BAD_ARCHIVE', `invalid OCI layout: blob ${desc.digest} does not match its digest`);
}

/** The local tag an index entry names, if any: containerd's full name, else a full-reference ref.name. */
function entryTag(d: DescriptorJson): string | undefined {
  for (const name of [d.annotations?.[IMAGE_NAME], d.annotations?.[REF_NAME]]) {
    if (!name || !/[:/]/.test(name)) continue;
    try {
      return localTag(parseRemoteReference(name));
    } catch {
      // not a reference: a bare tag such as "1"
    }
  }
  return undefined;
}

/**
 * `load` of an OCI image layout already extracted into `dir` (or any layout folder): every
 * index entry (a nested index picks linux/amd64) is verified blob by blob, its missing layers are
 * unpacked with the safe applier and registered as a chain; entries with a full image name are tagged.
 */
export async function loadOciLayout(layout: StoreLayout, dir: string): Promise<Array<{ id: ImageId; tags: string[] }>> {
  await ensureStore(layout);
  if (!(await exists(path.join(dir, 'index.json')))) throw new SlipwayError('ERR_BAD_ARCHIVE', 'invalid OCI layout: no index.json');
  const indexBytes = await fs.readFile(path.join(dir, 'index.json'));
  if (indexBytes.length > MAX_MANIFEST_BYTES) throw new SlipwayError('ERR_BAD_ARCHIVE', 'invalid OCI layout: index.json is too large');
  const top = parseManifest(indexBytes, MEDIA.ociIndex);
  if (top.kind !== 'index') throw new SlipwayError('ERR_BAD_ARCHIVE', 'invalid OCI layout: index.json is not an index');
  const results: Array<{ id: ImageId; tags: string[] }> = [];
  for (const entry of top.index.manifests) {
    let parsed = parseManifest(await readBlob(dir, entry, MAX_MANIFEST_BYTES), entry.mediaType);
    if (parsed.kind === 'index') parsed = parseManifest(await readBlob(dir, selectManifest(parsed.index), MAX_MANIFEST_BYTES));
    if (parsed.kind === 'index') throw new SlipwayError('ERR_BAD_ARCHIVE', 'invalid OCI layout: nested indexes are not supported');
    const m = parsed.manifest;
    const configBytes = await readBlob(dir, m.config, MAX_CONFIG_BYTES);
    const doc = checkConfigDoc(JSON.parse(configBytes.toString('utf8')));
    if (m.layers.length !== doc.rootfs.diff_ids.length) throw new SlipwayError('ERR_BAD_ARCHIVE', `invalid OCI layout: the manifest has ${m.layers.length} layers, the config ${doc.rootfs.diff_ids.length}`);
    const plan = planChain(doc);
    const layers = new Map<number, PreparedLayer>();
    try {
      for (const e of await missingEntries(layout, plan)) {
        if (e.layerIndex === undefined) continue;
        const desc = m.layers[e.layerIndex]!;
        layerCompression(desc.mediaType);
        const file = path.join(dir, ...blobName(desc.digest).split('/'));
        await verifyBlobFile(file, desc);
        const layerDir = path.join(await makeTmpDir(layout, 'layer'), 'layer');
        await fs.mkdir(layerDir, { mode: 0o755 });
        const { diffId, tarFile } = await unpackKeepingTar(createReadStream(file), layerDir, path.dirname(layerDir));
        layers.set(e.layerIndex, { layerDir, diffId, tarFile });
      }
      const { top: id } = await registerChain(layout, doc, plan, { layers, configBytes });
      const tag = entryTag(entry);
      if (tag) {
        const r = parseReference(tag);
        await updateRepositories(layout, (repos) => { (repos.Repositories[r.repository] ??= {})[r.tag] = id; });
      }
      results.push({ id, tags: tag ? [tag] : [] });
    } finally {
      for (const l of layers.values()) await fs.rm(path.dirname(l.layerDir), { recursive: true, force: true });
    }
  }
  return results;
}
