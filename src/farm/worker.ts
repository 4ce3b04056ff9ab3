import type { SandboxPolicy } from '../sandbox/limits.js';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createReadStream } from 'node:fs';
import { Queue, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { SlipwayError, errorToData, isUserError, withLocation } from '../errors.js';
import { StoreLayout, type ImageId } from '../store/layout.js';
import { ensureStore, makeTmpDir, resolveImage, sweepTmp } from '../store/graph.js';
import { updateRepositories } from '../store/repositories.js';
import { parseReference } from '../store/reference.js';
import { build } from '../scheduler/build.js';
import { WorkerPool } from '../scheduler/pool.js';
import { renderLegacy, type BuildEvent } from '../scheduler/progress.js';
import { receiveContext } from '../context/receive.js';
import { pushImage } from '../registry/push.js';
import { pullImage } from '../registry/pull.js';
import { BlobStore } from './blobs.js';
import { RedisCacheIndex } from './redis-cache-index.js';
import { connect, QUEUE_NAME } from './connection.js';
import { FarmMetrics, tapBuild, type BuildTap } from './metrics.js';
import { openSecrets, publishWorkerKey, withdrawWorkerKey, type WorkerKey } from './secret-box.js';
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
  name?: string;
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

/** The registry-qualified name a tag is pushed under. */
function pushName(registry: string, tag: string): string {
  const first = tag.split('/')[0]!;
  return first === registry ? tag : `${registry}/${tag}`;
}

/**
 * A FROM image this worker lacks: the farm's registry has it (pushed there once, as
 * `<registry>/<name>`). Pulled, then tagged under the name the Dockerfile uses. False only when
 * the registry says it has no such image (the user's error); an unreachable registry throws,
 * so the job is retried rather than failed as the user's fault.
 */
async function fetchBase(layout: StoreLayout, registry: string, ref: string): Promise<boolean> {
  const qualified = pushName(registry, ref);
  try {
    await pullImage({ layout, ref: qualified, insecureRegistries: [registry] });
  } catch (e) {
    if (e instanceof SlipwayError && (e.code === 'ERR_IMAGE_NOT_FOUND' || e.code === 'ERR_INVALID_REFERENCE')) return false;
    throw e instanceof SlipwayError && isUserError(e.code) ? new SlipwayError('ERR_REGISTRY', `pulling ${qualified}: ${e.message}`) : e;
  }
  const r = parseReference(ref);
  const q = parseReference(qualified);
  const pulled = await resolveImage(layout, `${q.repository}:${q.tag}`);
  await updateRepositories(layout, (repos) => { (repos.Repositories[r.repository] ??= {})[r.tag] = pulled; });
  return true;
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
  layout: StoreLayout;
  pool: WorkerPool;
  blobs: BlobStore;
  cacheRedis: Redis;
  metrics: FarmMetrics;
  lockDurationMs: number;
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

/** Builds one job's context in `tmp` with the farm's cache, and pushes its tags when asked. */
async function buildJob(w: WorkerEnv, job: Job<BuildJobData, BuildJobResult>, tmp: string, onEvent: (e: BuildEvent) => void, progress: (text: string) => void): Promise<{ id: ImageId; pushed: Array<{ tag: string; digest: string }> }> {
  const { opts, layout } = w;
  const data = job.data;
  const tarFile = path.join(tmp, 'context.tar');
  await w.blobs.get(data.contextRepo, data.contextDigest, data.contextSize, tarFile);
  const ctx = path.join(tmp, 'context');
  await receiveContext(createReadStream(tarFile), ctx);
  // The step lease lasts as long as the job lock: a dead worker's step is free again as soon as its job is.
  const cache = new RedisCacheIndex({ redis: w.cacheRedis, blobs: w.blobs, layout, tenant: data.tenant, worker: w.name, build: String(job.id), leaseMs: w.lockDurationMs });
  const localTags = data.tags.map((t) => pushName(opts.registry, t));
  const { id } = await build({
    layout, contextDir: ctx, ...(data.dockerfile ? { dockerfile: data.dockerfile } : {}), tags: localTags,
    buildArgs: data.buildArgs, ...(data.target ? { target: data.target } : {}), noCache: data.noCache ?? false,
    executor: w.pool, onEvent, remote: cache, sourceDateEpoch: Number(process.env['SOURCE_DATE_EPOCH'] ?? 0), persistStatCache: false,
    sandbox: opts.policy?.sandbox ?? {}, allowHostNetwork: opts.policy?.entitlements.includes('network.host') ?? false,
    allowInsecure: opts.policy?.entitlements.includes('security.insecure') ?? false, tenant: data.tenant,
    ...(data.secrets ? { secrets: openSecrets(data.secrets, w.secretKey) } : {}),
    fetchBase: (ref) => fetchBase(layout, opts.registry, ref),
  });
  const pushed: Array<{ tag: string; digest: string }> = [];
  if (!data.push) return { id, pushed };
  for (const t of localTags) {
    const res = await pushImage({ layout, ref: t, insecureRegistries: [opts.registry] });
    for (const r of res) pushed.push({ tag: t, digest: r.digest });
    progress(`pushed ${t} ${res[0]?.digest ?? ''}\n`);
  }
  return { id, pushed };
}

/**
 * One job. A user's error completes it with a failed result; an infrastructure fault throws,
 * so bullmq retries it with backoff.
 */
async function processJob(w: WorkerEnv, job: Job<BuildJobData, BuildJobResult>): Promise<BuildJobResult> {
  const started = Date.now();
  const tmp = await makeTmpDir(w.layout, 'job');
  const progress = jobProgress(job);
  // A job taken again (its worker died, or a retried fault) says so in the shared log.
  if (job.attemptsStarted > 1 || job.stalledCounter > 0) progress(`Taken again by ${w.name} (attempt ${job.attemptsStarted})\n`);
  const tap = tapBuild(w.metrics);
  const { steps, onEvent, finishStep } = stepRecorder(tap, progress);
  try {
    const { id, pushed } = await buildJob(w, job, tmp, onEvent, progress);
    tap.done('success');
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
  const layout = new StoreLayout(opts.root);
  await ensureStore(layout);
  await sweepTmp(layout);
  const pool = new WorkerPool(opts.threads !== undefined ? { workers: opts.threads } : {});
  const blobs = new BlobStore(opts.registry);
  const cacheRedis: Redis = connect(opts.redisUrl, 'worker');
  cacheRedis.on('error', () => undefined);
  const metrics = new FarmMetrics();
  const lockDurationMs = opts.lockDurationMs ?? 30_000;
  const secretKey = await publishWorkerKey(cacheRedis, name, opts.root);
  const env: WorkerEnv = { opts, name, log, layout, pool, blobs, cacheRedis, metrics, lockDurationMs, secretKey };
  const processor = (job: Job<BuildJobData, BuildJobResult>): Promise<BuildJobResult> => processJob(env, job);

  const workerConn = connect(opts.redisUrl, 'worker');
  workerConn.on('error', () => undefined);
  const worker = new Worker<BuildJobData, BuildJobResult>(QUEUE_NAME, processor, {
    connection: workerConn,
    concurrency: opts.concurrency,
    lockDuration: lockDurationMs,
    stalledInterval: Math.max(1000, Math.floor(lockDurationMs / 2)),
    maxStalledCount: 3,
    name,
  });
  worker.on('error', (e) => log(`worker: ${e.message}`));
  const served = opts.metricsPort !== undefined ? await metrics.serve(opts.metricsPort) : undefined;
  // Queue-wide gauges are sampled when scraped, on the cache connection.
  const statsQueue = new Queue(QUEUE_NAME, { connection: cacheRedis });
  statsQueue.on('error', () => undefined);
  metrics.queueSampler = async () => ({ depth: await statsQueue.count(), workers: (await statsQueue.getWorkers()).length });
  log(`worker ${name}: waiting for builds on ${QUEUE_NAME}`);
  return {
    name,
    metricsPort: served?.port,
    close: async () => {
      const timeout = opts.shutdownTimeoutMs ?? 60_000;
      const graceful = worker.close();
      const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), timeout).unref());
      if ((await Promise.race([graceful.then(() => 'done' as const), timer])) === 'timeout') {
        log(`worker ${name}: shutdown timeout, handing back running jobs`);
        await worker.close(true);
      }
      await served?.close();
      await pool.close();
      await statsQueue.close().catch(() => undefined);
      await withdrawWorkerKey(cacheRedis, name).catch(() => undefined);
      cacheRedis.disconnect();
      workerConn.disconnect();
    },
  };
}

