import type { SandboxPolicy } from '../sandbox/limits.js';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createReadStream } from 'node:fs';
import { Queue, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { SlipwayError, errorToData, isUserError, withLocation } from '../errors.js';
import { StoreLayout, type ImageId } from '../store/layout.js';
import { ensureStore, makeTmpDir, sweepTmp } from '../store/graph.js';
import { build } from '../scheduler/build.js';
import { WorkerPool } from '../scheduler/pool.js';
import { renderLegacy, type BuildEvent } from '../scheduler/progress.js';
import { receiveContext } from '../context/receive.js';
import { pushImage } from '../registry/push.js';
import type { Credentials } from '../registry/client.js';
import { BlobStore } from './blobs.js';
import { RedisCacheIndex } from './redis-cache-index.js';
import { connect, queueOptions, QUEUE_NAME } from './connection.js';
import { checkTenant, tenantKeyPrefix, tenantRoot } from './namespace.js';
import { farmImageName, fetchTenantBase } from './tenant-images.js';
import { jobLockKey, startWorkerQueues } from './worker-queues.js';
import { moveTagFenced, nextFence } from './fencing.js';
import { advertise } from './routing.js';
import { FarmMetrics, tapBuild, type BuildTap } from './metrics.js';
import { openSecrets, publishWorkerKey, withdrawWorkerKey, type WorkerKey } from './secret-box.js';
import { shareCacheMounts } from './cache-mount-sync.js';
import type { BuildJobData, BuildJobResult, FarmStep } from './job.js';

export interface FarmWorkerOptions {
  redisUrl: string;
  registry: string;
  root: string;
  /** Builds at once in this process. */
  concurrency: number;
  /** Worker threads for steps. */
  threads?: number;
  /** bullmq lock: how long a job stays claimed without renewal (a killed worker's job is retaken after it). */
  lockDurationMs?: number;
  shutdownTimeoutMs?: number;
  metricsPort?: number;
  /** Where the metrics listener binds (default 127.0.0.1). */
  metricsHost?: string;
  name?: string;
  /** The worker's own credentials for the farm's registry. */
  registryCredentials?: Credentials | undefined;
  /** The operator's shared namespace (public base images): a tenant that lacks a step or base may read it. */
  sharedTenant?: string | undefined;
  log?: (line: string) => void;
  /** The sandbox of every build this worker runs (`--memory`, `--allow network.host`, …). */
  policy?: SandboxPolicy;
  /** Share cache mounts with the other workers through Redis and the registry (default true). */
  shareCacheMounts?: boolean;
  /** Bytes a tenant's shared cache mounts may hold in the registry (default 1 GB, 0 for no cap). */
  cacheMountCapBytes?: number;
}

/** The default of `--cache-mount-cap`. */
export const DEFAULT_CACHE_MOUNT_CAP = 1e9;

/** A running worker process' handle. */
export interface FarmWorker {
  name: string;
  metricsPort: number | undefined;
  close(): Promise<void>;
}

/**
 * Turns a build's events into the job's output (rendered as `docker build` prints them) and the
 * result's step list (hit or miss, where from, how long a miss ran); metrics see every event.
 */
function stepRecorder(tap: BuildTap, progress: (text: string) => void): { steps: FarmStep[]; onEvent: (e: BuildEvent) => void; finishStep: () => void } {
  const steps: FarmStep[] = [];
  let current: { step: FarmStep; startedAt: number } | undefined;
  let lastStep: { n: number; text: string } | undefined;
  const finishStep = () => {
    if (current && !current.step.hit) current.step.durationMs = Date.now() - current.startedAt;
    current = undefined;
  };
  const onEvent = (e: BuildEvent) => {
    tap.event(e);
    if (e.type === 'step') {
      finishStep();
      lastStep = { n: e.n, text: e.text };
    } else if (e.type === 'cache-hit' || e.type === 'cache-miss') {
      const hit = e.type === 'cache-hit';
      const source = e.type === 'cache-hit' ? (e.source === 'cache-from' ? 'remote' : e.source ?? 'local') : 'local';
      const step: FarmStep = { n: lastStep?.n ?? -1, text: lastStep?.text ?? '', hit, source, durationMs: 0, ...(e.type === 'cache-miss' ? { reason: e.reason } : {}) };
      steps.push(step);
      current = { step, startedAt: Date.now() };
    } else if (e.type === 'image') finishStep();
    progress(renderLegacy(e));
  };
  return { steps, onEvent, finishStep };
}

/** What every job of one worker process shares. */
interface WorkerEnv {
  opts: FarmWorkerOptions;
  /** The key `submit --secret` seals a build's secrets for (secret-box.ts). */
  secretKey: WorkerKey;
  name: string;
  log: (line: string) => void;
  /** Each tenant builds in a store of its own, so a local cache hit never crosses tenants. */
  layoutFor: (tenant: string) => Promise<StoreLayout>;
  pool: WorkerPool;
  blobs: BlobStore;
  cacheRedis: Redis;
  metrics: FarmMetrics;
  lockDurationMs: number;
}

/** One job as its runner sees it: the bullmq job, its lock token, and whether affinity routed it here. */
interface JobRun {
  job: Job<BuildJobData, BuildJobResult>;
  token: string | undefined;
  routed: boolean;
  tenant: string;
  layout: StoreLayout;
}

/** The job's output: both go out in order on the worker's one connection (the log is the durable copy a follower replays). */
function jobProgress(job: Job<BuildJobData, BuildJobResult>): (text: string) => void {
  let seq = 0;
  return (text: string) => {
    if (!text) return;
    void job.updateProgress({ seq: seq++, text }).catch(() => undefined);
    void job.log(text).catch(() => undefined);
  };
}

/**
 * Pushes the job's tags, each only after moving the tag's record in Redis under the job's
 * fencing token and queue lock: a worker that lost its job (paused, cut off) moves no tag.
 */
async function pushTags(w: WorkerEnv, r: JobRun, fence: number, tags: string[], image: ImageId, progress: (t: string) => void): Promise<Array<{ tag: string; digest: string }>> {
  const pushed: Array<{ tag: string; digest: string }> = [];
  for (const t of tags) {
    const moved = await moveTagFenced(w.cacheRedis, {
      lockKey: jobLockKey(r.job.queueName, String(r.job.id)), token: r.token ?? '', tagKey: `${tenantKeyPrefix(r.tenant)}:tag:${t}`, fence, image, job: String(r.job.id),
    });
    if (!moved) throw new SlipwayError('ERR_REGISTRY', `not moving ${t}: this worker no longer holds build ${r.job.id} (fencing token ${fence})`);
    const res = await pushImage({ layout: r.layout, ref: t, insecureRegistries: [w.opts.registry], credentials: w.opts.registryCredentials });
    for (const p of res) pushed.push({ tag: t, digest: p.digest });
    progress(`pushed ${t} ${res[0]?.digest ?? ''}\n`);
  }
  return pushed;
}

/** Builds one job's context in `tmp` in the tenant's store, with the tenant's share of the farm's cache, and pushes its tags when asked. */
async function buildJob(w: WorkerEnv, r: JobRun, tmp: string, onEvent: (e: BuildEvent) => void, progress: (text: string) => void): Promise<{ id: ImageId; pushed: Array<{ tag: string; digest: string }> }> {
  const { opts } = w;
  const { data } = r.job;
  const fence = await nextFence(w.cacheRedis, `${tenantKeyPrefix(r.tenant)}:fence`);
  const tarFile = path.join(tmp, 'context.tar');
  await w.blobs.get(data.contextRepo, data.contextDigest, data.contextSize, tarFile);
  const ctx = path.join(tmp, 'context');
  await receiveContext(createReadStream(tarFile), ctx);
  // The step lease lasts as long as the job lock: a dead worker's step is free again as soon as its job is.
  const cache = new RedisCacheIndex({
    redis: w.cacheRedis, blobs: w.blobs, layout: r.layout, tenant: r.tenant, shared: opts.sharedTenant, worker: w.name, build: String(r.job.id), leaseMs: w.lockDurationMs,
  });
  const localTags = data.tags.map((t) => farmImageName(opts.registry, r.tenant, t));
  const { id } = await build({
    layout: r.layout, contextDir: ctx, ...(data.dockerfile ? { dockerfile: data.dockerfile } : {}), tags: localTags,
    buildArgs: data.buildArgs, ...(data.target ? { target: data.target } : {}), noCache: data.noCache ?? false,
    executor: w.pool, onEvent, remote: cache, sourceDateEpoch: Number(process.env['SOURCE_DATE_EPOCH'] ?? 0), persistStatCache: false,
    sandbox: opts.policy?.sandbox ?? {}, allowHostNetwork: opts.policy?.entitlements.includes('network.host') ?? false,
    allowInsecure: opts.policy?.entitlements.includes('security.insecure') ?? false, tenant: r.tenant,
    ...(data.secrets ? { secrets: openSecrets(data.secrets, w.secretKey) } : {}),
    ...(opts.shareCacheMounts !== false ? { cacheMountSync: shareCacheMounts({ redis: w.cacheRedis, blobs: w.blobs, capBytes: opts.cacheMountCapBytes ?? DEFAULT_CACHE_MOUNT_CAP, say: progress }) } : {}),
    fetchBase: (ref) => fetchTenantBase({ layout: r.layout, registry: opts.registry, credentials: opts.registryCredentials, tenant: r.tenant, shared: opts.sharedTenant, ref }),
  });
  const pushed = data.push ? await pushTags(w, r, fence, localTags, id, progress) : [];
  return { id, pushed };
}

/**
 * One job. A user's error completes it with a failed result; an infrastructure fault throws,
 * so bullmq retries it with backoff.
 */
async function processJob(w: WorkerEnv, job: Job<BuildJobData, BuildJobResult>, token: string | undefined, routed: boolean): Promise<BuildJobResult> {
  const started = Date.now();
  const tenant = checkTenant(job.data.tenant);
  const r: JobRun = { job, token, routed, tenant, layout: await w.layoutFor(tenant) };
  const tmp = await makeTmpDir(r.layout, 'job');
  const progress = jobProgress(job);
  // A job taken again (its worker died, or a retried fault) says so in the shared log.
  if (job.attemptsStarted > 1 || job.stalledCounter > 0) progress(`Taken again by ${w.name} (attempt ${job.attemptsStarted})\n`);
  const tap = tapBuild(w.metrics);
  const { steps, onEvent, finishStep } = stepRecorder(tap, progress);
  try {
    const { id, pushed } = await buildJob(w, r, tmp, onEvent, progress);
    tap.done('success');
    await advertise(w.cacheRedis, w.name, job.data.routeKeys ?? [], { steps: steps.length, hits: steps.filter((s) => s.hit).length, routed }).catch(() => undefined);
    return { ok: true, imageId: id, pushed, steps, worker: w.name, durationMs: Date.now() - started };
  } catch (e) {
    finishStep();
    if (e instanceof SlipwayError && isUserError(e.code)) {
      const error = withLocation(e.toData());
      progress(`error: ${error.message}\n`);
      tap.done('failure');
      return { ok: false, error, steps, worker: w.name, durationMs: Date.now() - started };
    }
    tap.done('error');
    w.log(`job ${job.id}: infrastructure fault, will be retried: ${errorToData(e).message}`);
    throw e instanceof Error ? e : new Error(String(e));
  } finally {
    await fs.rm(tmp, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** Each tenant's store under the worker's root, made and swept once per process. */
function tenantLayouts(root: string): (tenant: string) => Promise<StoreLayout> {
  const layouts = new Map<string, Promise<StoreLayout>>();
  return (tenant: string) => {
    let l = layouts.get(tenant);
    if (!l) {
      const layout = new StoreLayout(tenantRoot(root, tenant));
      l = ensureStore(layout).then(() => sweepTmp(layout)).then(() => layout);
      layouts.set(tenant, l);
    }
    return l;
  };
}

/**
 * `slipway worker`: takes build jobs from the queue (its own, for builds routed here by cache
 * affinity, and the shared one), builds each in its tenant's store with that tenant's share of
 * the farm's cache, pushes the result, and reports per-step progress and results. A user's
 * error completes the job with a failed result; an infrastructure fault throws, so bullmq
 * retries it with backoff. SIGTERM (via `close`) stops taking jobs and lets running ones finish
 * within the shutdown timeout; the rest are retaken by other workers when their lock lapses.
 */
export async function startFarmWorker(opts: FarmWorkerOptions): Promise<FarmWorker> {
  const name = opts.name ?? `${os.hostname()}-${process.pid}`;
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const layoutFor = tenantLayouts(opts.root);
  await layoutFor('default');
  const pool = new WorkerPool({ resident: true, ...(opts.threads !== undefined ? { workers: opts.threads } : {}) });
  const blobs = new BlobStore(opts.registry, opts.registryCredentials);
  const cacheRedis: Redis = connect(opts.redisUrl, 'worker');
  cacheRedis.on('error', () => undefined);
  const metrics = new FarmMetrics();
  const lockDurationMs = opts.lockDurationMs ?? 30_000;
  const secretKey = await publishWorkerKey(cacheRedis, name, opts.root);
  const env: WorkerEnv = { opts, name, log, layoutFor, pool, blobs, cacheRedis, metrics, lockDurationMs, secretKey };
  const queues = startWorkerQueues({
    redisUrl: opts.redisUrl, name, concurrency: opts.concurrency, lockDurationMs, redis: cacheRedis, log,
    processor: (job, token, routed) => processJob(env, job, token, routed),
  });
  const served = opts.metricsPort !== undefined ? await metrics.serve(opts.metricsPort, opts.metricsHost) : undefined;
  // Queue-wide gauges are sampled when scraped, on the cache connection.
  const statsQueue = new Queue(QUEUE_NAME, queueOptions(cacheRedis));
  statsQueue.on('error', () => undefined);
  metrics.queueSampler = async () => ({ depth: await statsQueue.count(), workers: (await statsQueue.getWorkers()).length });
  log(`worker ${name}: waiting for builds on ${QUEUE_NAME}`);
  return {
    name,
    metricsPort: served?.port,
    close: async () => {
      const timeout = opts.shutdownTimeoutMs ?? 60_000;
      const graceful = queues.close(false);
      const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), timeout).unref());
      if ((await Promise.race([graceful.then(() => 'done' as const), timer])) === 'timeout') {
        log(`worker ${name}: shutdown timeout, handing back running jobs`);
        await queues.close(true);
      }
      await served?.close();
      await pool.close();
      await statsQueue.close().catch(() => undefined);
      await withdrawWorkerKey(cacheRedis, name).catch(() => undefined);
      cacheRedis.disconnect();
    },
  };
}
