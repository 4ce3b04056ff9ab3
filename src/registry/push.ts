import fs from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { PassThrough, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { SlipwayError } from '../errors.js';
import { shortId, type ImageId, type StoreLayout } from '../store/layout.js';
import { imageChain, makeTmpDir, readDiffId, resolveImage } from '../store/graph.js';
import { listTags, readRepositories } from '../store/repositories.js';
import { sha256Hex } from '../fs.js';
import { imageConfigBytes, writeLayerTar } from './chain.js';
import { RegistryClient, type Credentials } from './client.js';
import { readV2Metadata, recordV2Metadata } from './distribution-metadata.js';
import { MEDIA, manifestBytes, type DescriptorJson, type ImageManifestJson } from './manifest.js';
import { mapLimit } from './map-limit.js';
import { noProgress, type ProgressSink } from './progress.js';
import { DEFAULT_INDEX, parseRemoteReference, qualifiedRepository, type RemoteReference } from './remote-reference.js';

/** What `pushImage` needs. */
export interface PushOptions {
  layout: StoreLayout;
  /** `[HOST/]NAME[:TAG]` of a local image. */
  ref: string;
  /** Push every local tag of the repository (`push -a`). */
  allTags?: boolean;
  /** `docker` (schema 2, the default) or `oci` manifests and media types. */
  format?: 'docker' | 'oci';
  credentials?: Credentials | undefined;
  insecureRegistries?: readonly string[];
  onProgress?: ProgressSink;
  /** Blobs larger than this go up in PATCH chunks of this size (default 16 MiB). */
  chunkSize?: number;
  /** Layers pushed at once (default 3, as Docker's max-concurrent-uploads is 5). */
  concurrency?: number;
}

/** One pushed tag. */
export interface PushResult {
  tag: string;
  digest: string;
  size: number;
}

/** Docker's refusal of a root repository on the default index, in the seed's words. */
export const ROOT_REPOSITORY_MESSAGE = 'Impossible to push a "root" repository. Please rename your repository in <user>/<repo> (ex: thoward/scooby_snacks)';

const DEFAULT_CHUNK = 16 * 1024 * 1024;

interface PushContext {
  client: RegistryClient;
  remote: RemoteReference;
  layout: StoreLayout;
  oci: boolean;
  chunkSize: number;
  tmp: string;
  progress: ProgressSink;
}

/**
 * `push`: uploads an image's layers (gzip), config and manifest to its registry, skipping what
 * the registry has: a layer pushed before (remembered per diff id) is only checked with HEAD, a
 * layer known in another repository of the same registry is mounted, and only then is the layer
 * compressed (once) and uploaded with POST + PUT, or PATCH chunks for large blobs.
 */
export async function pushImage(opts: PushOptions): Promise<PushResult[]> {
  const remote = parseRemoteReference(opts.ref);
  if (remote.root) throw new SlipwayError('ERR_INVALID_REFERENCE', ROOT_REPOSITORY_MESSAGE, { bare: true });
  if (remote.digest) throw new SlipwayError('ERR_INVALID_REFERENCE', 'cannot push a digest reference');
  const progress = opts.onProgress ?? noProgress;
  const tags = opts.allTags && !/:[^/]*$/.test(opts.ref)
    ? listTags(await readRepositories(opts.layout)).filter((t) => t.repository === remote.localName).map((t) => t.tag).sort()
    : [remote.tag ?? 'latest'];
  if (tags.length === 0) throw new SlipwayError('ERR_IMAGE_NOT_FOUND', `An image does not exist locally with the tag: ${remote.localName}`);
  const images = await Promise.all(tags.map(async (tag) => {
    try {
      return { tag, id: await resolveImage(opts.layout, `${remote.localName}:${tag}`) };
    } catch {
      throw new SlipwayError('ERR_IMAGE_NOT_FOUND', `An image does not exist locally with the tag: ${remote.localName}${tags.length > 1 || tag !== 'latest' ? `:${tag}` : ''}`);
    }
  }));
  const client = new RegistryClient({
    registry: remote.registry, credentials: opts.credentials, scopes: [`repository:${remote.path}:pull,push`],
    ...(opts.insecureRegistries ? { insecureRegistries: opts.insecureRegistries } : {}),
  });
  progress({ status: `The push refers to repository [${remote.registry === DEFAULT_INDEX ? `docker.io/${remote.path}` : remote.localName}]` });
  const tmp = await makeTmpDir(opts.layout, 'push');
  const ctx: PushContext = { client, remote, layout: opts.layout, oci: opts.format === 'oci', chunkSize: opts.chunkSize ?? DEFAULT_CHUNK, tmp, progress };
  try {
    const results: PushResult[] = [];
    for (const { tag, id } of images) results.push(await pushOne(ctx, tag, id, opts.concurrency ?? 3));
    return results;
  } catch (e) {
    if (e instanceof SlipwayError && e.code === 'ERR_UNAUTHORIZED') {
      const login = remote.registry === DEFAULT_INDEX ? 'slipway login' : `slipway login ${remote.registry}`;
      const why = e.message.replace(/^.*?: (?=unauthorized|denied)/, '');
      throw new SlipwayError('ERR_UNAUTHORIZED', `push to ${remote.localName} failed: ${why} (log in with '${login}')`);
    }
    throw e;
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

async function pushOne(ctx: PushContext, tag: string, id: ImageId, concurrency: number): Promise<PushResult> {
  const layers: Array<{ id: ImageId; diffId: string }> = [];
  for (const c of (await imageChain(ctx.layout, id)).reverse()) {
    if (!c.json.throwaway) layers.push({ id: c.id, diffId: await readDiffId(ctx.layout, c.id) });
  }
  // A layer that occurs twice in one image (the same diff id) is pushed once.
  const unique = [...new Map(layers.map((l) => [l.diffId, l])).values()];
  for (const l of unique) ctx.progress({ status: 'Preparing', id: shortId(l.diffId), progressDetail: {} });
  const pushed = await mapLimit(unique, concurrency, (l) => pushLayer(ctx, l.id, l.diffId));
  const byDiffId = new Map(unique.map((l, i) => [l.diffId, pushed[i]!]));
  const config = await imageConfigBytes(ctx.layout, id);
  const configDesc: DescriptorJson = { mediaType: ctx.oci ? MEDIA.ociConfig : MEDIA.dockerConfig, digest: `sha256:${sha256Hex(config)}`, size: config.length };
  if ((await ctx.client.headBlob(ctx.remote.path, configDesc.digest)) === undefined) {
    const file = path.join(ctx.tmp, 'config.json');
    await fs.writeFile(file, config);
    await ctx.client.uploadBlob(ctx.remote.path, { file, size: config.length, digest: configDesc.digest }, { chunkSize: ctx.chunkSize });
  }
  const manifest: ImageManifestJson = {
    schemaVersion: 2, mediaType: ctx.oci ? MEDIA.ociManifest : MEDIA.dockerManifest, config: configDesc,
    layers: layers.map((l) => byDiffId.get(l.diffId)!),
  };
  const bytes = manifestBytes(manifest);
  const digest = `sha256:${sha256Hex(bytes)}`;
  const echoed = await ctx.client.putManifest(ctx.remote.path, tag, manifest.mediaType!, bytes);
  if (echoed && echoed !== digest) throw new SlipwayError('ERR_REGISTRY', `the registry stored the manifest as ${echoed}, expected ${digest}`);
  ctx.progress({ status: `${tag}: digest: ${digest} size: ${bytes.length}` });
  ctx.progress({ status: '', progressDetail: {}, aux: { Tag: tag, Digest: digest, Size: bytes.length } });
  return { tag, digest, size: bytes.length };
}

/** Pushes (or finds, or mounts) one layer; returns its manifest descriptor. */
async function pushLayer(ctx: PushContext, id: ImageId, diffId: string): Promise<DescriptorJson> {
  const short = shortId(diffId);
  const mediaType = ctx.oci ? MEDIA.ociLayerGzip : MEDIA.dockerLayerGzip;
  const target = qualifiedRepository(ctx.remote);
  const known = await readV2Metadata(ctx.layout, diffId);
  const remember = (digest: string, size: number) => recordV2Metadata(ctx.layout, diffId, { Digest: digest, SourceRepository: target, Size: size });
  // 1. Pushed here before: HEAD is enough.
  for (const m of known.filter((k) => k.SourceRepository === target)) {
    const size = await ctx.client.headBlob(ctx.remote.path, m.Digest);
    if (size !== undefined) {
      ctx.progress({ status: 'Layer already exists', id: short, progressDetail: {} });
      return { mediaType, digest: m.Digest, size };
    }
  }
  // 2. Known in another repository of this registry: ask for a cross-repository mount.
  let session: string | undefined;
  const prefix = `${ctx.remote.registry}/`;
  for (const m of known.filter((k) => k.SourceRepository !== target && k.SourceRepository.startsWith(prefix)).slice(0, 3)) {
    const from = m.SourceRepository.slice(prefix.length);
    const r = await ctx.client.mountBlob(ctx.remote.path, m.Digest, from);
    if (r.mounted) {
      const size = m.Size ?? (await ctx.client.headBlob(ctx.remote.path, m.Digest)) ?? 0;
      await remember(m.Digest, size);
      ctx.progress({ status: `Mounted from ${from}`, id: short, progressDetail: {} });
      return { mediaType, digest: m.Digest, size };
    }
    session ??= r.location;
  }
  // 3. Compress once, HEAD the result (another client may have pushed the same bytes), upload.
  const blob = await compressLayer(ctx, id);
  try {
    const have = await ctx.client.headBlob(ctx.remote.path, blob.digest);
    if (have !== undefined) {
      await remember(blob.digest, blob.size);
      ctx.progress({ status: 'Layer already exists', id: short, progressDetail: {} });
      return { mediaType, digest: blob.digest, size: blob.size };
    }
    ctx.progress({ status: 'Pushing', id: short, progressDetail: { current: 0, total: blob.size } });
    await ctx.client.uploadBlob(ctx.remote.path, blob, {
      chunkSize: ctx.chunkSize, location: session,
      onProgress: (current, total) => ctx.progress({ status: 'Pushing', id: short, progressDetail: { current, total } }),
    });
    await remember(blob.digest, blob.size);
    ctx.progress({ status: 'Pushed', id: short, progressDetail: {} });
    return { mediaType, digest: blob.digest, size: blob.size };
  } finally {
    await fs.rm(blob.file, { force: true });
  }
}

/** gzips a layer's tar into a temp file, hashing the compressed bytes on the way. */
async function compressLayer(ctx: PushContext, id: ImageId): Promise<{ file: string; size: number; digest: string }> {
  const file = path.join(ctx.tmp, `${id}.tar.gz`);
  const hash = createHash('sha256');
  let size = 0;
  const tar = new PassThrough();
  const tap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      size += chunk.length;
      cb(null, chunk);
    },
  });
  // writeLayerTar checks that the tar still hashes to the diff id the config names.
  await Promise.all([writeLayerTar(ctx.layout, id, tar), pipeline(tar, createGzip(), tap, createWriteStream(file, { mode: 0o600 }))]);
  return { file, size, digest: `sha256:${hash.digest('hex')}` };
}
