import { SlipwayError } from '../errors.js';

/** Media types of Docker v2 schema 2 and OCI images, as the registry API spells them. */
export const MEDIA = {
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerForeignLayerGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
} as const;

/** What a pull asks for: every manifest and index type we understand. */
export const MANIFEST_ACCEPT = [MEDIA.dockerManifest, MEDIA.dockerList, MEDIA.ociManifest, MEDIA.ociIndex].join(', ');

/** Clients must accept manifests of at least 4 MB (distribution-spec); we refuse larger ones. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/** A generous cap on a config blob (long histories), which is read into memory. */
export const MAX_CONFIG_BYTES = 16 * 1024 * 1024;

/** A content descriptor. */
export interface DescriptorJson {
  mediaType: string;
  digest: string;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  platform?: { architecture: string; os: string; variant?: string; 'os.version'?: string };
}

/** A Docker schema 2 or OCI image manifest. */
export interface ImageManifestJson {
  schemaVersion: 2;
  mediaType?: string;
  config: DescriptorJson;
  layers: DescriptorJson[];
  annotations?: Record<string, string>;
}

/** A Docker manifest list or OCI image index. */
export interface ImageIndexJson {
  schemaVersion: 2;
  mediaType?: string;
  manifests: DescriptorJson[];
  annotations?: Record<string, string>;
}

/** A parsed manifest document: an image, or an index to choose from. */
export type ParsedManifest = { kind: 'image'; mediaType: string; manifest: ImageManifestJson } | { kind: 'index'; mediaType: string; index: ImageIndexJson };

const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** True for a `sha256:<64 hex>` digest (the only algorithm accepted). */
export function isDigest(s: unknown): s is string {
  return typeof s === 'string' && DIGEST.test(s);
}

function checkDescriptor(d: unknown, what: string): DescriptorJson {
  const o = d as Partial<DescriptorJson> | null;
  if (!o || typeof o !== 'object' || typeof o.mediaType !== 'string' || !isDigest(o.digest) || !Number.isSafeInteger(o.size) || (o.size as number) < 0) {
    throw new SlipwayError('ERR_REGISTRY', `invalid manifest: bad ${what} descriptor ${JSON.stringify(d)?.slice(0, 200)}`);
  }
  return o as DescriptorJson;
}

/**
 * Parses and validates a manifest's bytes. The media type is the document's own `mediaType`,
 * else the response's Content-Type, else inferred from the shape (OCI allows it to be absent).
 */
export function parseManifest(bytes: Uint8Array, contentType?: string | null): ParsedManifest {
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(Buffer.from(bytes).toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new SlipwayError('ERR_REGISTRY', 'invalid manifest: not JSON');
  }
  if (!doc || typeof doc !== 'object') throw new SlipwayError('ERR_REGISTRY', 'invalid manifest: not an object');
  const header = contentType?.split(';')[0]?.trim();
  const inferred = Array.isArray(doc['manifests']) ? MEDIA.ociIndex : MEDIA.ociManifest;
  const mediaType = typeof doc['mediaType'] === 'string' ? doc['mediaType'] : header && header !== 'application/json' ? header : inferred;
  if (doc['schemaVersion'] !== 2) throw new SlipwayError('ERR_REGISTRY', `unsupported manifest: schemaVersion ${String(doc['schemaVersion'])} (${mediaType}); only schema 2 and OCI images are supported`);
  if (mediaType === MEDIA.dockerList || mediaType === MEDIA.ociIndex) {
    if (!Array.isArray(doc['manifests'])) throw new SlipwayError('ERR_REGISTRY', 'invalid index: no manifests');
    const manifests = (doc['manifests'] as unknown[]).map((m) => checkDescriptor(m, 'manifest'));
    return { kind: 'index', mediaType, index: { ...(doc as unknown as ImageIndexJson), manifests } };
  }
  if (mediaType !== MEDIA.dockerManifest && mediaType !== MEDIA.ociManifest) {
    throw new SlipwayError('ERR_REGISTRY', `unsupported manifest media type ${mediaType}`);
  }
  if (!Array.isArray(doc['layers'])) throw new SlipwayError('ERR_REGISTRY', 'invalid manifest: no layers');
  const config = checkDescriptor(doc['config'], 'config');
  const layers = (doc['layers'] as unknown[]).map((l) => checkDescriptor(l, 'layer'));
  return { kind: 'image', mediaType, manifest: { ...(doc as unknown as ImageManifestJson), config, layers } };
}

/** The platform a pull picks from an index. */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** This engine's platform: images run here are linux/amd64. */
export const DEFAULT_PLATFORM: Platform = { os: 'linux', architecture: 'amd64' };

/** Picks the index entry for `platform` (an entry without a platform never matches). */
export function selectManifest(index: ImageIndexJson, platform: Platform = DEFAULT_PLATFORM): DescriptorJson {
  const found = index.manifests.find((m) => m.platform?.os === platform.os && m.platform.architecture === platform.architecture
    && (platform.variant === undefined || m.platform.variant === platform.variant)
    && (m.mediaType === MEDIA.dockerManifest || m.mediaType === MEDIA.ociManifest));
  if (!found) {
    throw new SlipwayError('ERR_IMAGE_NOT_FOUND', `no matching manifest for ${platform.os}/${platform.architecture}${platform.variant ? `/${platform.variant}` : ''} in the manifest list entries`);
  }
  return found;
}

/** The layer's compression, from its media type; zstd (and anything else) is refused. */
export function layerCompression(mediaType: string): 'gzip' | 'none' {
  if (mediaType === MEDIA.dockerLayerGzip || mediaType === MEDIA.dockerForeignLayerGzip || mediaType === MEDIA.ociLayerGzip
    || mediaType === 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip') return 'gzip';
  if (mediaType === MEDIA.ociLayer || mediaType === 'application/vnd.oci.image.layer.nondistributable.v1.tar') return 'none';
  throw new SlipwayError('ERR_REGISTRY', `unsupported layer media type ${mediaType}`);
}

/**
 * Serializes a manifest the way Docker's distribution does (`json.MarshalIndent`, three spaces).
 * The bytes are made once: their sha256 is the manifest digest.
 */
export function manifestBytes(doc: ImageManifestJson | ImageIndexJson): Buffer {
  return Buffer.from(JSON.stringify(doc, null, 3));
}
