import fs from 'node:fs/promises';
import path from 'node:path';
import crypto from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { createGzip, createGunzip } from 'node:zlib';
import type { Redis } from 'ioredis';
import type { RemoteCache } from '../scheduler/remote-cache.js';
import type { ImageJson } from '../image-config.js';
import { StoreLayout, type ImageId } from '../store/layout.js';
import { hasImage, makeTmpDir, registerImage } from '../store/graph.js';
import { layerSize } from '../snapshot/pack.js';
import { writeLayerTar } from '../registry/chain.js';
import { imageIdOf } from '../cache/key.js';
import { unpackLayer } from '../snapshot/unpack.js';
import { sha256Hex } from '../fs.js';
import { SlipwayError } from '../errors.js';
import type { BlobStore } from './blobs.js';
import { layerRepo, tenantKeyPrefix } from './namespace.js';
import { acquireFencedLease, publishFenced, releaseLease, renewLease } from './fencing.js';

/** One small record per step key in Redis. */
export interface RemoteRecord {
  /** gzip blob of the layer tar in the farm registry's `layerRepo` (absent for an empty layer). */
  layerDigest?: string;
  /** The repository holding the layer: the producing tenant's. */
  layerRepo?: string;
  /** The fencing token of the lease it was published under. */
  fence?: number;
  layerSize?: number;
  diffId: string;
  imageJson: ImageJson;
  size: number;
  build: string;
  worker: string;
  durationMs: number;
}

/** How long a step lease lasts unless renewed (renewed every third of it while its holder builds). */
const DEFAULT_LEASE_MS = 15_000;

/** What a worker counts about its use of the farm's cache (for tests and metrics). */
export interface RemoteCacheCounters { fetched: number; published: number; waitedForLease: number; fencedOff: number }

/** What a RedisCacheIndex is built from. */
export interface RedisCacheIndexOptions {
  redis: Redis;
  blobs: BlobStore;
  layout: StoreLayout;
  tenant: string;
  /** The operator's shared namespace (public base images): read, never written, by other tenants. */
  shared?: string | undefined;
  worker: string;
  build: string;
  leaseMs?: number;
}

/**
 * The farm's shared cache: Redis holds one record per step key (key -> layer digest, diff id,
 * image JSON, size, producing build, duration), written when a step commits and read lazily
 * per step; the registry holds the layers, in the tenant's own repository. Keys live under the
 * tenant's prefix (`slipway:t:<tenant>:`) and name the sha256 of the step's preimage, so
 * tenants never share entries (except reads of the operator's shared namespace) and xxh64
 * collisions cannot cross machines. A per-key lease (renewed while building, expiring if its
 * holder dies) makes identical steps reached by two workers at once build once; it carries a
 * fencing token, checked atomically when the record is published, so a holder that lost its
 * lease (paused, partitioned) can never overwrite what the next holder published.
 */
export class RedisCacheIndex implements RemoteCache {
  readonly counters: RemoteCacheCounters = { fetched: 0, published: 0, waitedForLease: 0, fencedOff: 0 };
  private readonly leases = new Map<string, { value: string; fence: number }>();

  constructor(private readonly opts: RedisCacheIndexOptions) {}

  private key(kind: 'cache' | 'lease', preimage: string, tenant = this.opts.tenant): string {
    return `${tenantKeyPrefix(tenant)}:${kind}:${sha256Hex(preimage)}`;
  }

  /** The tenant's record, else the shared namespace's; a record naming another tenant's layers is ignored. */
  private async record(preimage: string): Promise<RemoteRecord | undefined> {
    const { tenant, shared } = this.opts;
    for (const t of shared && shared !== tenant ? [tenant, shared] : [tenant]) {
      const raw = await this.opts.redis.get(this.key('cache', preimage, t));
      if (!raw) continue;
      const rec = JSON.parse(raw) as RemoteRecord;
      if (rec.layerDigest && rec.layerRepo !== layerRepo(t)) continue;
      return rec;
    }
    return undefined;
  }

  async fetch(preimage: string, parent: ImageId | null, key: string): Promise<{ id: ImageId; durationMs: number } | undefined> {
    const rec = await this.record(preimage);
    if (!rec) return undefined;
    // The id is a function of content: the same on the machine that built it.
    const id = imageIdOf(parent, key, rec.diffId);
    if (await hasImage(this.opts.layout, id)) return { id, durationMs: rec.durationMs };
    const tmp = await makeTmpDir(this.opts.layout, 'remote');
    try {
      const layerDir = path.join(tmp, 'layer');
      const tar = path.join(tmp, 'layer.tar');
      await fs.mkdir(layerDir, { mode: 0o755 });
      if (rec.layerDigest && rec.layerSize !== undefined) {
        const gz = path.join(tmp, 'layer.tar.gz');
        await this.opts.blobs.get(rec.layerRepo!, rec.layerDigest, rec.layerSize, gz);
        // The tar is kept with the image (layer.tar), so a push of it never packs the folder again.
        await pipeline(createReadStream(gz), createGunzip(), createWriteStream(tar));
        const { diffId } = await unpackLayer(createReadStream(tar), layerDir);
        if (diffId !== rec.diffId) throw new SlipwayError('ERR_REGISTRY', `farm cache: layer ${rec.layerDigest} has diff id ${diffId}, the index says ${rec.diffId}`);
      }
      const json: ImageJson = { ...rec.imageJson, id, ...(parent ? { parent } : {}) };
      const kept = rec.layerDigest ? { originalTar: tar } : {};
      await registerImage(this.opts.layout, { id, json, layerDir, diffId: rec.diffId, layerSize: await layerSize(layerDir), ...kept });
      this.counters.fetched++;
      return { id, durationMs: rec.durationMs };
    } finally {
      await fs.rm(tmp, { recursive: true, force: true });
    }
  }

  async lease(preimage: string): Promise<{ release(): Promise<void> } | { built: true }> {
    const k = this.key('lease', preimage);
    const fenceKey = `${tenantKeyPrefix(this.opts.tenant)}:fence`;
    const owner = `${this.opts.worker}:${crypto.randomBytes(6).toString('hex')}`;
    const leaseMs = this.opts.leaseMs ?? DEFAULT_LEASE_MS;
    const redis = this.opts.redis;
    let waited = false;
    let held: { value: string; fence: number } | undefined;
    for (;;) {
      held = await acquireFencedLease(redis, k, fenceKey, owner, leaseMs);
      if (held) break;
      if (!waited) {
        waited = true;
        this.counters.waitedForLease++;
      }
      // Someone else is building this step: wait for its record, or for the lease to lapse.
      await new Promise((r) => setTimeout(r, 250));
      if (await redis.exists(this.key('cache', preimage))) return { built: true };
    }
    const lease = held;
    // The caller's fetch missed before we asked for the lease; another worker may have
    // published and released in between. Building now would run the step a second time.
    if (await redis.exists(this.key('cache', preimage))) {
      await releaseLease(redis, k, lease.value).catch(() => undefined);
      return { built: true };
    }
    this.leases.set(preimage, lease);
    const renew = setInterval(() => void renewLease(redis, k, lease.value, leaseMs).catch(() => undefined), leaseMs / 3);
    renew.unref();
    return {
      release: async () => {
        clearInterval(renew);
        this.leases.delete(preimage);
        await releaseLease(redis, k, lease.value).catch(() => undefined);
      },
    };
  }

  async publish(preimage: string, image: { id: ImageId; json: ImageJson; diffId: string; size: number; durationMs: number; layerDir: string }): Promise<void> {
    const rec: RemoteRecord = { diffId: image.diffId, imageJson: image.json, size: image.size, build: this.opts.build, worker: this.opts.worker, durationMs: image.durationMs };
    if (!image.json.throwaway) {
      const tmp = await makeTmpDir(this.opts.layout, 'publish');
      try {
        const gz = path.join(tmp, 'layer.tar.gz');
        // The tar the step kept (graph/<id>/layer.tar), checked against the diff id: not packed again.
        const zip = createGzip();
        const written = pipeline(zip, createWriteStream(gz));
        await writeLayerTar(this.opts.layout, image.id, zip);
        await written;
        const repo = layerRepo(this.opts.tenant);
        const put = await this.opts.blobs.put(repo, gz);
        rec.layerDigest = put.digest;
        rec.layerSize = put.size;
        rec.layerRepo = repo;
      } finally {
        await fs.rm(tmp, { recursive: true, force: true });
      }
    }
    const lease = this.leases.get(preimage);
    if (!lease) throw new SlipwayError('ERR_INTERNAL', `farm cache: step ${image.id.slice(0, 12)} published without its lease`);
    rec.fence = lease.fence;
    const outcome = await publishFenced(this.opts.redis, this.key('lease', preimage), this.key('cache', preimage), lease.value, JSON.stringify(rec));
    if (outcome === 'fenced') {
      this.counters.fencedOff++;
      // Not the user's fault and not ours to fix: the job is retried, and finds the winner's record.
      throw new SlipwayError('ERR_REGISTRY', `farm cache: lost the lease of step ${image.id.slice(0, 12)} (fencing token ${lease.fence}); another worker holds it now, so this result is not published`);
    }
    this.counters.published++;
  }
}
