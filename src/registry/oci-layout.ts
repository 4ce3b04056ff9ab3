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
import { listTags, readRepositories } from '../store/repositories.js';
import { parseReference } from '../store/reference.js';
import { sha256Hex, writeFileAtomic } from '../fs.js';
import { imageConfigBytes, missingEntries, writeLayerTar } from './chain.js';
import type { ArchiveMembers } from './archive-members.js';
import { parseArchiveJson } from './archive-members.js';
import { planItem, unpackMissing, type PreparedImage, type UnpackedLayers } from './load-prepare.js';
import { CHAIN_ANNOTATION, CHAIN_FIELD, savedChain } from './saved-chain.js';
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
  /** The blob listing the chain's ids and image JSON (saved-chain.ts). */
  chainDigest: string;
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
  const chain = Buffer.from(JSON.stringify(await savedChain(layout, id)));
  const chainDigest = `sha256:${sha256Hex(chain)}`;
  if ((await sink.sizeOf(blobName(chainDigest))) === undefined) await sink.addBytes(blobName(chainDigest), chain);
  return { manifest: { mediaType: MEDIA.ociManifest, digest, size: bytes.length }, configName: blobName(configDigest), layerNames: layers.map((l) => blobName(l.digest)), chainDigest };
}

/** Index entries for a written image: one per tag, annotated as moby and containerd do. */
function indexEntries(img: WrittenImage): DescriptorJson[] {
  const chain = { [CHAIN_ANNOTATION]: img.chainDigest };
  if (img.tags.length === 0) return [{ ...img.manifest, annotations: chain }];
  return img.tags.map((t) => {
    const r = parseRemoteReference(t);
    return { ...img.manifest, annotations: { [IMAGE_NAME]: `${qualifiedRepository(r)}:${r.tag}`, [REF_NAME]: r.tag ?? 'latest', ...chain } };
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
  let outFailed: unknown;
  const done = pipeline(pack, out as Writable);
  done.catch((e: unknown) => { outFailed = e; });
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
    const manifestJson = images.map((i) => ({ Config: i.configName, RepoTags: i.tags.length ? i.tags : null, Layers: i.layerNames, [CHAIN_FIELD]: blobName(i.chainDigest) }));
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
    throw outFailed ?? e;
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
    if (!entries.includes('oci-layout') || !entries.includes('index.json')) throw new SlipwayError('ERR_INVALID_OPTION', `${dir} exists and is not an OCI image layout`);
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
async function readBlob(members: ArchiveMembers, desc: DescriptorJson, cap: number): Promise<Buffer> {
  if (!desc || typeof desc !== 'object' || !isDigest(desc.digest)) throw new SlipwayError('ERR_BAD_ARCHIVE', `invalid OCI layout: bad digest ${JSON.stringify(desc?.digest)}`);
  if (typeof desc.size !== 'number' || desc.size > cap) throw new SlipwayError('ERR_BAD_ARCHIVE', `invalid OCI layout: blob ${desc.digest} is too large (${desc.size} bytes)`);
  if (!members.has(blobName(desc.digest))) throw new SlipwayError('ERR_BAD_ARCHIVE', `invalid OCI layout: blob ${desc.digest} is missing`);
  const bytes = await members.bytes(blobName(desc.digest), 'blob', cap);
  if (bytes.length !== desc.size || `sha256:${sha256Hex(bytes)}` !== desc.digest) throw new SlipwayError('ERR_BAD_ARCHIVE', `invalid OCI layout: blob ${desc.digest} does not match its digest`);
  return bytes;
}

/** Checks a (large) blob's size and digest by streaming it. */
async function verifyBlobFile(members: ArchiveMembers, desc: DescriptorJson): Promise<void> {
  if (!members.has(blobName(desc.digest))) throw new SlipwayError('ERR_BAD_ARCHIVE', `invalid OCI layout: blob ${desc.digest} is missing`);
  const hash = createHash('sha256');
  let n = 0;
  for await (const chunk of members.stream(blobName(desc.digest), 'blob')) {
    hash.update(chunk as Buffer);
    n += (chunk as Buffer).length;
  }
  if (n !== desc.size || `sha256:${hash.digest('hex')}` !== desc.digest) throw new SlipwayError('ERR_BAD_ARCHIVE', `invalid OCI layout: blob ${desc.digest} does not match its digest`);
}

/** The local tag an index entry names, if any: containerd's full name, else a full-reference ref.name. */
function entryTag(d: DescriptorJson): string | undefined {
  for (const name of [d.annotations?.[IMAGE_NAME], d.annotations?.[REF_NAME]]) {
    if (typeof name !== 'string' || !/[:/]/.test(name)) continue;
    try {
      return localTag(parseRemoteReference(name));
    } catch {
      // not a reference: a bare tag such as "1"
    }
  }
  return undefined;
}

/** The saved chain an index entry's annotation names (see saved-chain.ts). */
async function readChainBlob(members: ArchiveMembers, digest: unknown): Promise<unknown> {
  if (!isDigest(digest)) throw new SlipwayError('ERR_BAD_ARCHIVE', `invalid OCI layout: ${CHAIN_ANNOTATION} is not a digest`);
  const bytes = await members.bytes(blobName(digest), CHAIN_ANNOTATION, MAX_CONFIG_BYTES);
  if (`sha256:${sha256Hex(bytes)}` !== digest) throw new SlipwayError('ERR_BAD_ARCHIVE', `invalid OCI layout: blob ${digest} does not match its digest`);
  return parseArchiveJson(bytes, CHAIN_ANNOTATION);
}

/** A manifest or index blob: checked for depth like every archive JSON, then parsed. */
function manifestOf(bytes: Buffer, mediaType?: string): ReturnType<typeof parseManifest> {
  parseArchiveJson(bytes, 'manifest');
  return parseManifest(bytes, mediaType);
}

/** The image manifest an index entry names (a nested index picks linux/amd64). */
async function entryManifest(members: ArchiveMembers, entry: DescriptorJson): Promise<ImageManifestJson> {
  let parsed = manifestOf(await readBlob(members, entry, MAX_MANIFEST_BYTES), entry.mediaType);
  if (parsed.kind === 'index') parsed = manifestOf(await readBlob(members, selectManifest(parsed.index), MAX_MANIFEST_BYTES));
  if (parsed.kind === 'index') throw new SlipwayError('ERR_BAD_ARCHIVE', 'invalid OCI layout: nested indexes are not supported');
  return parsed.manifest;
}

/**
 * The images of an OCI image layout extracted from an archive, prepared for `commitImages`:
 * every index entry's blobs are verified, missing layers unpacked with the safe applier;
 * entries with a full image name are tagged. Blobs are found by digest among the archive's
 * members only.
 */
export async function prepareOciLayout(layout: StoreLayout, members: ArchiveMembers, ctx: { tmp: string; unpacked: UnpackedLayers }): Promise<PreparedImage[]> {
  await ensureStore(layout);
  if (!members.has('index.json')) throw new SlipwayError('ERR_BAD_ARCHIVE', 'invalid OCI layout: no index.json');
  const top = manifestOf(await members.bytes('index.json', 'index.json', MAX_MANIFEST_BYTES), MEDIA.ociIndex);
  if (top.kind !== 'index') throw new SlipwayError('ERR_BAD_ARCHIVE', 'invalid OCI layout: index.json is not an index');
  const items: PreparedImage[] = [];
  for (const entry of top.index.manifests) {
    const m = await entryManifest(members, entry);
    const configBytes = await readBlob(members, m.config, MAX_CONFIG_BYTES);
    const chainDigest = entry.annotations?.[CHAIN_ANNOTATION];
    const saved = chainDigest === undefined ? undefined : await readChainBlob(members, chainDigest);
    const { doc, plan } = await planItem(layout, configBytes, `config ${m.config.digest}`, saved);
    if (m.layers.length !== doc.rootfs.diff_ids.length) throw new SlipwayError('ERR_BAD_ARCHIVE', `invalid OCI layout: the manifest has ${m.layers.length} layers, the config ${doc.rootfs.diff_ids.length}`);
    for (const desc of m.layers) {
      layerCompression(desc.mediaType);
      if (!isDigest(desc.digest)) throw new SlipwayError('ERR_BAD_ARCHIVE', `invalid OCI layout: bad digest ${JSON.stringify(desc.digest)}`);
    }
    const missing = new Set((await missingEntries(layout, plan)).flatMap((e) => (e.layerIndex === undefined ? [] : [e.layerIndex])));
    for (const i of missing) await verifyBlobFile(members, m.layers[i]!);
    const layers = await unpackMissing(layout, plan, ctx, (i) => members.stream(blobName(m.layers[i]!.digest), 'layer'), (i) => m.layers[i]!.digest);
    const tag = entryTag(entry);
    items.push({ doc, plan, configBytes, layers, tags: tag ? [parseReference(tag)] : [] });
  }
  return items;
}
