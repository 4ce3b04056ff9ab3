import type { SandboxPolicy } from '../sandbox/limits.js';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createReadStream } from 'node:fs';
import { Queue, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { SlipwayError, errorToData, type ErrorCode, type SlipwayErrorData } from '../errors.js';
import { StoreLayout } from '../store/layout.js';
import { ensureStore, makeTmpDir, sweepTmp } from '../store/graph.js';
import { build } from '../scheduler/build.js';
import { WorkerPool } from '../scheduler/pool.js';
import { renderLegacy, type BuildEvent } from '../scheduler/progress.js';
import { applyTarToRoot } from '../snapshot/apply.js';
import { decompressStream } from '../snapshot/unpack.js';
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
import { FarmMetrics } from './metrics.js';
import type { BuildJobData, BuildJobResult, FarmStep } from './job.js';

/** Errors that are the user's (bad Dockerfile, failing RUN …): a finished job with a failed result, never retried. */
const USER_ERRORS: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'ERR_DOCKERFILE_SYNTAX', 'ERR_DOCKERFILE_NO_STAGE', 'ERR_UNKNOWN_STAGE', 'ERR_BAD_SUBSTITUTION', 'ERR_CONTEXT_PATH',
  'ERR_FILE_NOT_FOUND', 'ERR_COPY_DEST', 'ERR_NO_SUCH_USER', 'ERR_STEP_FAILED', 'ERR_IMAGE_NOT_FOUND',
  'ERR_INVALID_REFERENCE', 'ERR_USAGE', 'ERR_BAD_ARCHIVE',
]);

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
}

/** A running worker process' handle. */
export interface FarmWorker {
  name: string;
  metricsPort: number | undefined;
  close(): Promise<void>;
}

/** A user error's message names its Dockerfile line (a failing RUN's message, Docker's own, does not). */
function withLine(d: SlipwayErrorData): SlipwayErrorData {
  if (d.line === undefined) return d;
  const prefix = `${d.file ?? 'Dockerfile'}:${d.line}: `;
  return d.message.includes(`:${d.line}: `) ? d : { ...d, message: `${prefix}${d.message}` };
}

/**
 * Turns a build's events into the job's output (rendered as `docker build` prints them), the
 * result's step list (hit or miss, where from, how long a miss ran) and the step metrics.
 */
function stepRecorder(metrics: FarmMetrics, progress: (text: string) => void): { steps: FarmStep[]; onEvent: (e: BuildEvent) => void; finishStep: () => void } {
  const steps: FarmStep[] = [];
  let current: { step: FarmStep; startedAt: number } | undefined;
  let lastStep: { n: number; text: string } | undefined;
  const finishStep = () => {
    if (current && !current.step.hit) {
      current.step.durationMs = Date.now() - current.startedAt;
      metrics.stepSeconds.observe(current.step.durationMs / 1000);
    }
    current = undefined;
  };
  const onEvent = (e: BuildEvent) => {
    if (e.type === 'step') {
      finishStep();
      lastStep = { n: e.n, text: e.text };
    } else if (e.type === 'cache-hit' || e.type === 'cache-miss') {
      const hit = e.type === 'cache-hit';
      const source = e.type === 'cache-hit' ? e.source ?? 'local' : 'local';
      const step: FarmStep = { n: lastStep?.n ?? -1, text: lastStep?.text ?? '', hit, source, durationMs: 0, ...(e.type === 'cache-miss' ? { reason: e.reason } : {}) };
      steps.push(step);
      current = { step, startedAt: Date.now() };
      metrics.steps.inc({ outcome: hit ? 'hit' : 'miss', source });
    } else if (e.type === 'image') finishStep();
    else if (e.type === 'summary') metrics.cacheSavedSeconds.inc(e.savedMs / 1000);
    progress(renderLegacy(e));
  };
  return { steps, onEvent, finishStep };
}

/**
 * `slipway worker`: takes build jobs from the queue, builds each in its own --root with the
 * farm's shared cache, pushes the result, and reports per-step progress and results. A user's
 * error completes the job with a failed result; an infrastructure fault throws, so bullmq
 * retries it with backoff. SIGTERM (via `close`) stops taking jobs and lets running ones finish
 * within the shutdown timeout; the rest are retaken by other workers when their lock lapses.
 */
export async function startFarmWorker(opts: FarmWorkerOptions): Promise<FarmWorker> {
  const name = opts.name ?? `${os.hostname()}-${process.pid}`;
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const pool = new WorkerPool(opts.threads !== undefined ? { workers: opts.threads } : {});
  const blobs = new BlobStore(opts.registry, opts.registryCredentials);
  const cacheRedis: Redis = connect(opts.redisUrl, 'worker');
  cacheRedis.on('error', () => undefined);
  const metrics = new FarmMetrics();
  const lockDurationMs = opts.lockDurationMs ?? 30_000;
  const layouts = new Map<string, Promise<StoreLayout>>();
  // Each tenant builds in a store of its own, so a local cache hit never crosses tenants.
  const layoutFor = (tenant: string) => {
    let l = layouts.get(tenant);
    if (!l) {
      const layout = new StoreLayout(tenantRoot(opts.root, tenant));
      l = ensureStore(layout).then(() => sweepTmp(layout)).then(() => layout);
      layouts.set(tenant, l);
    }
    return l;
  };
  await layoutFor('default');
  const env: JobEnv = { opts, name, pool, blobs, redis: cacheRedis, metrics, lockDurationMs, log, layoutFor };
  const queues = startWorkerQueues({
    redisUrl: opts.redisUrl, name, concurrency: opts.concurrency, lockDurationMs, redis: cacheRedis, log,
    processor: (job, token, routed) => runBuildJob(env, job, token, routed),
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
      cacheRedis.disconnect();
    },
  };
}

/** What every build job of one worker shares. */
interface JobEnv {
  opts: FarmWorkerOptions;
  name: string;
  pool: WorkerPool;
  blobs: BlobStore;
  redis: Redis;
  metrics: FarmMetrics;
  lockDurationMs: number;
  log: (l: string) => void;
  layoutFor: (tenant: string) => Promise<StoreLayout>;
}

/** The job's progress: rendered text into the job's log (what followers replay) and progress events. */
function jobProgress(job: Job<BuildJobData, BuildJobResult>): (text: string) => void {
  let seq = 0;
  return (text: string) => {
    if (!text) return;
    // Fire and forget, but in order: both go out on the worker's one connection. The log is
    // the durable copy a follower replays from the start (events published before it
    // subscribed are gone); the progress event is for live listeners.
    void job.updateProgress({ seq: seq++, text }).catch(() => undefined);
    void job.log(text).catch(() => undefined);
  };
}

/** Downloads and unpacks the job's context into `tmp/context`. */
async function fetchContext(blobs: BlobStore, data: BuildJobData, tmp: string): Promise<string> {
  const tarFile = path.join(tmp, 'context.tar');
  await blobs.get(data.contextRepo, data.contextDigest, data.contextSize, tarFile);
  const ctx = path.join(tmp, 'context');
  await fs.mkdir(ctx, { mode: 0o755 });
  const { stream } = await decompressStream(createReadStream(tarFile));
  await applyTarToRoot(stream, ctx, '/');
  return ctx;
}

/**
 * Pushes the job's tags, each only after moving the tag's record in Redis under the job's
 * fencing token and queue lock: a worker that lost its job (paused, cut off) moves no tag.
 */
async function pushTags(env: JobEnv, job: Job<BuildJobData, BuildJobResult>, token: string | undefined, fence: number, layout: StoreLayout, tags: string[], image: string, progress: (t: string) => void): Promise<Array<{ tag: string; digest: string }>> {
  const pushed: Array<{ tag: string; digest: string }> = [];
  for (const t of tags) {
    const moved = await moveTagFenced(env.redis, {
      lockKey: jobLockKey(job.queueName, String(job.id)), token: token ?? '', tagKey: `${tenantKeyPrefix(job.data.tenant)}:tag:${t}`, fence, image, job: String(job.id),
    });
    if (!moved) throw new SlipwayError('ERR_REGISTRY', `not moving ${t}: this worker no longer holds build ${job.id} (fencing token ${fence})`);
    const res = await pushImage({ layout, ref: t, insecureRegistries: [env.opts.registry], credentials: env.opts.registryCredentials });
    for (const r of res) pushed.push({ tag: t, digest: r.digest });
    progress(`pushed ${t} ${res[0]?.digest ?? ''}\n`);
  }
  return pushed;
}

/**
 * One build job: the context from the registry, the build in the tenant's store with the
 * tenant's share of the farm's cache, the push, and the result. A user's error completes the
 * job with a failed result; an infrastructure fault throws, so bullmq retries it.
 */
async function runBuildJob(env: JobEnv, job: Job<BuildJobData, BuildJobResult>, token: string | undefined, routed: boolean): Promise<BuildJobResult> {
  const { opts, name, metrics } = env;
  const data = job.data;
  const tenant = checkTenant(data.tenant);
  const layout = await env.layoutFor(tenant);
  const started = Date.now();
  const tmp = await makeTmpDir(layout, 'job');
  const progress = jobProgress(job);
  // A job taken again (its worker died, or a retried fault) says so in the shared log.
  if (job.attemptsMade > 0 || job.stalledCounter > 0) progress(`Taken again by ${name} (attempt ${job.attemptsStarted})\n`);
  metrics.running.inc();
  const { steps, onEvent, finishStep } = stepRecorder(metrics, progress);
  try {
    const fence = await nextFence(env.redis, `${tenantKeyPrefix(tenant)}:fence`);
    const ctx = await fetchContext(env.blobs, data, tmp);
    // The step lease lasts as long as the job lock: a dead worker's step is free again as
    // soon as its job is.
    const cache = new RedisCacheIndex({ redis: env.redis, blobs: env.blobs, layout, tenant, shared: opts.sharedTenant, worker: name, build: String(job.id), leaseMs: env.lockDurationMs });
    const localTags = data.tags.map((t) => farmImageName(opts.registry, tenant, t));
    const { id } = await build({
      layout, contextDir: ctx, ...(data.dockerfile ? { dockerfile: data.dockerfile } : {}), tags: localTags,
      buildArgs: data.buildArgs, ...(data.target ? { target: data.target } : {}), noCache: data.noCache ?? false,
      pool: env.pool, onEvent, remote: cache, sourceDateEpoch: Number(process.env['SOURCE_DATE_EPOCH'] ?? 0), persistStatCache: false,
      sandbox: opts.policy?.sandbox ?? {}, allowHostNetwork: opts.policy?.entitlements.includes('network.host') ?? false,
      fetchBase: (ref) => fetchTenantBase({ layout, registry: opts.registry, credentials: opts.registryCredentials, tenant, shared: opts.sharedTenant, ref }),
    });
    const pushed = data.push ? await pushTags(env, job, token, fence, layout, localTags, id, progress) : [];
    metrics.builds.inc({ result: 'success' });
    metrics.buildSeconds.observe((Date.now() - started) / 1000);
    await advertise(env.redis, name, data.routeKeys ?? [], { steps: steps.length, hits: steps.filter((s) => s.hit).length, routed }).catch(() => undefined);
    return { ok: true, imageId: id, pushed, steps, worker: name, durationMs: Date.now() - started };
  } catch (e) {
    finishStep();
    if (e instanceof SlipwayError && USER_ERRORS.has(e.code)) {
      const error = withLine(e.toData());
      progress(`error: ${error.message}\n`);
      metrics.builds.inc({ result: 'failure' });
      return { ok: false, error, steps, worker: name, durationMs: Date.now() - started };
    }
    metrics.builds.inc({ result: 'error' });
    env.log(`job ${job.id}: infrastructure fault, will be retried: ${errorToData(e).message}`);
    throw e instanceof Error ? e : new Error(String(e));
  } finally {
    metrics.running.dec();
    await fs.rm(tmp, { recursive: true, force: true }).catch(() => undefined);
  }
}
