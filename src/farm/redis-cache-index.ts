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
import { BlobStore, LAYER_REPO } from './blobs.js';

/** One small record per step key in Redis. */
export interface RemoteRecord {
  /** gzip blob of the layer tar in the farm registry's LAYER_REPO (absent for an empty layer). */
  layerDigest?: string;
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
export interface RemoteCacheCounters { fetched: number; published: number; waitedForLease: number }

/**
 * The farm's shared cache: Redis holds one record per step key (key -> layer digest, diff id,
 * image JSON, size, producing build, duration), written when a step commits and read lazily
 * per step; the registry holds the layers. Keys are sha256 of the tenant and the step's
 * preimage, so tenants never share entries and xxh64 collisions cannot cross machines.
 * A per-key lease (renewed while building, expiring if its holder dies) makes identical steps
 * reached by two workers at once build once.
 */
export class RedisCacheIndex implements RemoteCache {
  readonly counters: RemoteCacheCounters = { fetched: 0, published: 0, waitedForLease: 0 };

  constructor(private readonly opts: { redis: Redis; blobs: BlobStore; layout: StoreLayout; tenant: string; worker: string; build: string; prefix?: string; leaseMs?: number }) {}

  private key(kind: 'cache' | 'lease', preimage: string): string {
    return `${this.opts.prefix ?? 'slipway'}:${kind}:${sha256Hex(`${this.opts.tenant}\n${preimage}`)}`;
  }

  async fetch(preimage: string, parent: ImageId | null, key: string): Promise<{ id: ImageId; durationMs: number } | undefined> {
    const raw = await this.opts.redis.get(this.key('cache', preimage));
    if (!raw) return undefined;
    const rec = JSON.parse(raw) as RemoteRecord;
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
        await this.opts.blobs.get(LAYER_REPO, rec.layerDigest, rec.layerSize, gz);
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
    const token = `${this.opts.worker}:${crypto.randomBytes(6).toString('hex')}`;
    const leaseMs = this.opts.leaseMs ?? DEFAULT_LEASE_MS;
    let waited = false;
    for (;;) {
      const ok = await this.opts.redis.set(k, token, 'PX', leaseMs, 'NX');
      if (ok === 'OK') break;
      if (!waited) {
        waited = true;
        this.counters.waitedForLease++;
      }
      // Someone else is building this step: wait for its record, or for the lease to lapse.
      await new Promise((r) => setTimeout(r, 250));
      if (await this.opts.redis.exists(this.key('cache', preimage))) return { built: true };
    }
    const redis = this.opts.redis;
    // The caller's fetch missed before we asked for the lease; another worker may have
    // published and released in between. Building now would run the step a second time.
    if (await redis.exists(this.key('cache', preimage))) {
      await redis.eval("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end", 1, k, token).catch(() => undefined);
      return { built: true };
    }
    const renew = setInterval(() => {
      // Extend only our own lease (compare-and-set in one script).
      void redis.eval("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end", 1, k, token, String(leaseMs)).catch(() => undefined);
    }, leaseMs / 3);
    renew.unref();
    return {
      release: async () => {
        clearInterval(renew);
        await redis.eval("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end", 1, k, token).catch(() => undefined);
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
        const put = await this.opts.blobs.put(LAYER_REPO, gz);
        rec.layerDigest = put.digest;
        rec.layerSize = put.size;
      } finally {
        await fs.rm(tmp, { recursive: true, force: true });
      }
    }
    await this.opts.redis.set(this.key('cache', preimage), JSON.stringify(rec));
    this.counters.published++;
  }
}
