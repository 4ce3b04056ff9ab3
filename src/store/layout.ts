import path from 'node:path';

/** A 64-hex image id. */
export type ImageId = string & { readonly __brand: 'ImageId' };
/** A 16-hex xxh64 cache key. */
export type CacheKey = string & { readonly __brand: 'CacheKey' };

/**
 * The only place where on-disk paths of a store are spelled. The layout is the seed's:
 * `repositories`, `graph/<id>/{json,layersize,layer/}`, `graph/_tmp/`; plus Slipway's
 * `cache/` index (cache key -> image id and key preimage) and `locks/`.
 */
export class StoreLayout {
  constructor(readonly root: string) {}

  get repositories(): string { return path.join(this.root, 'repositories'); }
  get graph(): string { return path.join(this.root, 'graph'); }
  get tmp(): string { return path.join(this.root, 'graph', '_tmp'); }
  get cacheDir(): string { return path.join(this.root, 'cache'); }
  get statCacheDir(): string { return path.join(this.root, 'stat-cache'); }
  get lockDir(): string { return path.join(this.root, 'locks'); }
  /** Per-step history: the last preimage seen for a step identity (to explain misses). */
  get historyDir(): string { return path.join(this.root, 'history'); }
  /** One JSON record per build: per-step hit/miss, reason, time, bytes (for `stats`). */
  get buildsDir(): string { return path.join(this.root, 'builds'); }
  /** Image ids that running builds use (prune keeps them). */
  get runningDir(): string { return path.join(this.root, 'running'); }

  /** `parsed/<sha256>`: a Dockerfile's parse, kept so a later build skips the parser (see cache/parsed-dockerfile.ts). */
  parsedDockerfile(key: string): string { return path.join(this.root, 'parsed', key); }

  /** `cache-mounts/<key>/`: RUN --mount=type=cache folders kept between builds (see store/cache-mounts.ts). */
  get cacheMountsDir(): string { return path.join(this.root, 'cache-mounts'); }
  cacheMountDir(key: string): string { return path.join(this.cacheMountsDir, key); }

  imageDir(id: ImageId): string { return path.join(this.graph, id); }
  imageJson(id: ImageId): string { return path.join(this.graph, id, 'json'); }
  layerSize(id: ImageId): string { return path.join(this.graph, id, 'layersize'); }
  layerDir(id: ImageId): string { return path.join(this.graph, id, 'layer'); }
  /** sha256 of the layer's tar form, `sha256:<hex>` (Docker's diff id). */
  diffIdFile(id: ImageId): string { return path.join(this.graph, id, 'diffid'); }
  /**
   * The layer's original tar, kept for imported, loaded and pulled layers: our own packer need
   * not reproduce another tool's bytes, and the diff id must keep naming these bytes.
   */
  layerTar(id: ImageId): string { return path.join(this.graph, id, 'layer.tar'); }
  /**
   * The image config document exactly as a registry or archive carried it (its sha256 is the
   * config digest), kept for the top image of a pulled or loaded chain so push and save reproduce it.
   */
  configJson(id: ImageId): string { return path.join(this.graph, id, 'config.json'); }
  /** Docker's distribution metadata: which compressed blobs a layer's diff id is known as, and where. */
  get distributionDir(): string { return path.join(this.root, 'distribution'); }
  /** `distribution/v2metadata-by-diffid/sha256/<hex>`: JSON list of {Digest, SourceRepository, Size}. */
  v2MetadataByDiffId(diffId: string): string { return path.join(this.distributionDir, 'v2metadata-by-diffid', 'sha256', diffId.replace(/^sha256:/, '')); }
  /** `distribution/diffid-by-digest/sha256/<hex>`: the diff id of a compressed blob. */
  diffIdByDigest(digest: string): string { return path.join(this.distributionDir, 'diffid-by-digest', 'sha256', digest.replace(/^sha256:/, '')); }
  cacheEntry(key: CacheKey): string { return path.join(this.cacheDir, key.slice(0, 2), `${key}.json`); }
  lock(name: string): string { return path.join(this.lockDir, `${name}.lock`); }
  /** `locks/steps/<key>.lease`: held by the process building that step (see store/lease.ts). */
  stepLease(key: CacheKey): string { return path.join(this.lockDir, 'steps', `${key}.lease`); }
}

/** True for a full 64-hex image id. */
export function isImageId(s: string): s is ImageId {
  return /^[0-9a-f]{64}$/.test(s);
}

/** The 12-character short form Docker prints. */
export function shortId(id: string): string {
  return id.replace(/^sha256:/, '').slice(0, 12);
}

/** sha256 of an empty tar (two 512-byte zero blocks... as Docker writes for an empty layer: 1024 zero bytes). */
export const EMPTY_LAYER_DIFF_ID = 'sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef';
