import fs from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import path from 'node:path';
import { SlipwayError } from '../errors.js';
import { shortId, type ImageId, type StoreLayout } from '../store/layout.js';
import { ensureStore, makeTmpDir } from '../store/graph.js';
import { readRepositories, updateRepositories } from '../store/repositories.js';
import { sha256Hex } from '../fs.js';
import { checkConfigDoc, missingEntries, planChain, registerChain, unpackKeepingTar, type PreparedLayer } from './chain.js';
import { RegistryClient, type Credentials } from './client.js';
import { recordV2Metadata } from './distribution-metadata.js';
import { MAX_CONFIG_BYTES, layerCompression, parseManifest, selectManifest, type ImageManifestJson, type Platform } from './manifest.js';
import { mapLimit } from './map-limit.js';
import { pingRegistry } from './ping.js';
import { noProgress, type ProgressSink } from './progress.js';
import { DEFAULT_INDEX, localTag, parseRemoteReference, qualifiedRepository, type RemoteReference } from './remote-reference.js';

/** What `pullImage` needs. */
export interface PullOptions {
  layout: StoreLayout;
  /** `[HOST/]NAME[:TAG|@DIGEST]`. */
  ref: string;
  credentials?: Credentials | undefined;
  insecureRegistries?: readonly string[];
  onProgress?: ProgressSink;
  /** The platform picked from a manifest list or index (default linux/amd64). */
  platform?: Platform;
  /** Layers downloaded at once (default 3, as Docker's max-concurrent-downloads). */
  concurrency?: number;
}

/** What a pull produced. */
export interface PullResult {
  id: ImageId;
  /** The digest of the manifest (or list) the reference resolved to. */
  digest: string;
  /** The local `name:tag` now pointing at `id` (none for a digest reference). */
  tag: string | undefined;
  /** The full reference, as the CLI prints it last. */
  reference: string;
  upToDate: boolean;
}

/** Fetches the manifest `reference` names and checks its bytes against the digest it was asked for or announced. */
async function fetchManifest(client: RegistryClient, remote: RemoteReference, reference: string, expected: { digest: string; size?: number } | undefined): Promise<{ bytes: Buffer; digest: string; contentType: string | null }> {
  const { bytes, contentType, digest: announced } = await client.getManifest(remote.path, reference);
  const digest = `sha256:${sha256Hex(bytes)}`;
  if (expected && (digest !== expected.digest || (expected.size !== undefined && bytes.length !== expected.size))) {
    throw new SlipwayError('ERR_REGISTRY', `manifest ${expected.digest}: the registry sent content hashing to ${digest}`);
  }
  if (!expected && announced?.startsWith('sha256:') && announced !== digest) {
    throw new SlipwayError('ERR_REGISTRY', `manifest ${remote.path}:${reference}: Docker-Content-Digest ${announced} does not match the content (${digest})`);
  }
  return { bytes, digest, contentType };
}

/** Resolves the reference to one image manifest (picking the platform from an index). */
export async function resolveManifest(client: RegistryClient, remote: RemoteReference, platform: Platform | undefined): Promise<{ manifest: ImageManifestJson; digest: string }> {
  const reference = remote.digest ?? remote.tag ?? 'latest';
  const first = await fetchManifest(client, remote, reference, remote.digest ? { digest: remote.digest } : undefined);
  const parsed = parseManifest(first.bytes, first.contentType);
  if (parsed.kind === 'image') return { manifest: parsed.manifest, digest: first.digest };
  const desc = selectManifest(parsed.index, platform);
  const inner = await fetchManifest(client, remote, desc.digest, desc);
  const picked = parseManifest(inner.bytes, inner.contentType);
  if (picked.kind !== 'image') throw new SlipwayError('ERR_REGISTRY', `manifest ${desc.digest}: an index inside an index is not supported`);
  return { manifest: picked.manifest, digest: first.digest };
}

/**
 * `pull`: resolves the reference (manifest lists and OCI indexes pick linux/amd64), verifies the
 * config and every layer against their digests, downloads and unpacks the missing layers
 * concurrently with the safe applier, and registers the chain. Layers whose image the store
 * already has are not downloaded. The tag is set last, so a failed pull changes no tag.
 */
export async function pullImage(opts: PullOptions): Promise<PullResult> {
  const remote = parseRemoteReference(opts.ref);
  const progress = opts.onProgress ?? noProgress;
  const client = new RegistryClient({
    registry: remote.registry, credentials: opts.credentials, scopes: [`repository:${remote.path}:pull`],
    ...(opts.insecureRegistries ? { insecureRegistries: opts.insecureRegistries } : {}),
  });
  const shown = remote.registry === DEFAULT_INDEX ? `docker.io/${remote.path}` : remote.localName;
  const reference = `${shown}${remote.tag ? `:${remote.tag}` : ''}${remote.digest ? `@${remote.digest}` : ''}`;
  // Docker pings the registry first: an unreachable one fails with the dial error, and the
  // store is not touched.
  await pingRegistry(client.base);
  await ensureStore(opts.layout);
  progress({ status: `Pulling from ${remote.path}`, id: remote.tag ?? remote.digest! });
  try {
    const { manifest, digest } = await resolveManifest(client, remote, opts.platform);
    const { top, added } = await pullLayers({ ...opts, client, remote, progress, manifest });
    const tag = localTag(remote);
    let previous: string | undefined;
    if (tag) {
      const [repository, t] = [remote.localName, remote.tag!];
      previous = (await readRepositories(opts.layout)).Repositories[repository]?.[t];
      await updateRepositories(opts.layout, (r) => { (r.Repositories[repository] ??= {})[t] = top; });
    }
    const upToDate = added.length === 0 && (tag === undefined || previous === top);
    progress({ status: `Digest: ${digest}` });
    progress({ status: `Status: ${upToDate ? 'Image is up to date' : 'Downloaded newer image'} for ${reference}` });
    return { id: top, digest, tag, reference, upToDate };
  } catch (e) {
    if (e instanceof SlipwayError && e.code === 'ERR_UNAUTHORIZED') {
      throw new SlipwayError('ERR_UNAUTHORIZED', `pull access denied for ${remote.localName}, repository does not exist or may require 'slipway login': ${e.message.replace(/^.*?: (?=unauthorized|denied)/, '')}`);
    }
    throw e;
  }
}

/**
 * A `FROM` of an image the store lacks, as a Docker daemon handles it: pulled when its name
 * names a registry (`127.0.0.1:5000/app`, `registry.local/team/app:1`), with the pull's own
 * errors (Docker's wording: an unreachable registry gives its dial error). False, with nothing
 * tried, for names on the default index, which this store never pulls implicitly.
 */
export async function pullBaseImage(opts: PullOptions): Promise<boolean> {
  if (parseRemoteReference(opts.ref).registry === DEFAULT_INDEX) return false;
  await pullImage(opts);
  return true;
}

/** Fetches the config, plans the chain, downloads what is missing and registers it. */
async function pullLayers(a: { layout: StoreLayout; client: RegistryClient; remote: RemoteReference; progress: ProgressSink; manifest: ImageManifestJson; concurrency?: number }): Promise<{ top: ImageId; added: ImageId[] }> {
  const { layout, manifest } = a;
  const configBytes = await a.client.getBlobBytes(a.remote.path, manifest.config, MAX_CONFIG_BYTES);
  let docJson: unknown;
  try {
    docJson = JSON.parse(configBytes.toString('utf8'));
  } catch {
    throw new SlipwayError('ERR_REGISTRY', `config ${manifest.config.digest} is not JSON`);
  }
  const doc = checkConfigDoc(docJson);
  if (manifest.layers.length !== doc.rootfs.diff_ids.length) {
    throw new SlipwayError('ERR_REGISTRY', `invalid image: the manifest has ${manifest.layers.length} layers, the config ${doc.rootfs.diff_ids.length}`);
  }
  manifest.layers.forEach((l) => layerCompression(l.mediaType));
  const plan = planChain(doc);
  const need = new Set((await missingEntries(layout, plan)).flatMap((e) => (e.layerIndex === undefined ? [] : [e.layerIndex])));
  manifest.layers.forEach((l, i) => a.progress({ status: need.has(i) ? 'Pulling fs layer' : 'Already exists', id: shortId(l.digest), progressDetail: {} }));
  const scratch: string[] = [];
  try {
    const prepared = await mapLimit([...need].sort((x, y) => x - y), a.concurrency ?? 3, async (i) => {
      const dir = await makeTmpDir(layout, 'pull');
      scratch.push(dir);
      return [i, await fetchLayer({ ...a, index: i, diffId: doc.rootfs.diff_ids[i]!, dir })] as const;
    });
    // Registered only once every layer is verified: a failed pull adds no image.
    return await registerChain(layout, doc, plan, { layers: new Map<number, PreparedLayer>(prepared), configBytes });
  } finally {
    for (const d of scratch) await fs.rm(d, { recursive: true, force: true });
  }
}

/** Downloads one layer blob (verified), unpacks it, and checks its diff id against the config. */
async function fetchLayer(a: { client: RegistryClient; remote: RemoteReference; layout: StoreLayout; progress: ProgressSink; manifest: ImageManifestJson; index: number; diffId: string; dir: string }): Promise<PreparedLayer> {
  const desc = a.manifest.layers[a.index]!;
  const id = shortId(desc.digest);
  const blob = path.join(a.dir, 'blob');
  await a.client.downloadBlob(a.remote.path, desc, blob, (current, total) => a.progress({ status: 'Downloading', id, progressDetail: { current, total } }));
  a.progress({ status: 'Verifying Checksum', id, progressDetail: {} });
  a.progress({ status: 'Download complete', id, progressDetail: {} });
  const layerDir = path.join(a.dir, 'layer');
  await fs.mkdir(layerDir, { mode: 0o755 });
  a.progress({ status: 'Extracting', id, progressDetail: {} });
  const { diffId, tarFile } = await unpackKeepingTar(createReadStream(blob), layerDir, a.dir);
  await fs.rm(blob, { force: true });
  if (diffId !== a.diffId) throw new SlipwayError('ERR_REGISTRY', `layer ${desc.digest} unpacks to diff id ${diffId}, the config says ${a.diffId}`);
  await recordV2Metadata(a.layout, diffId, { Digest: desc.digest, SourceRepository: qualifiedRepository(a.remote), Size: desc.size });
  a.progress({ status: 'Pull complete', id, progressDetail: {} });
  return { layerDir, diffId, tarFile };
}
