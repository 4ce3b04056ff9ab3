import type { SandboxPolicy } from '../sandbox/limits.js';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createReadStream } from 'node:fs';
import { Queue, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { SlipwayError, errorToData, type ErrorCode, type SlipwayErrorData } from '../errors.js';
import { StoreLayout } from '../store/layout.js';
import { ensureStore, makeTmpDir, resolveImage, sweepTmp } from '../store/graph.js';
import { updateRepositories } from '../store/repositories.js';
import { parseReference } from '../store/reference.js';
import { build } from '../scheduler/build.js';
import { WorkerPool } from '../scheduler/pool.js';
import { renderLegacy, type BuildEvent } from '../scheduler/progress.js';
import { applyTarToRoot } from '../snapshot/apply.js';
import { decompressStream } from '../snapshot/unpack.js';
import { pushImage } from '../registry/push.js';
import { pullImage } from '../registry/pull.js';
import { BlobStore } from './blobs.js';
import { RedisCacheIndex } from './redis-cache-index.js';
import { connect, QUEUE_NAME } from './connection.js';
import { FarmMetrics } from './metrics.js';
import { openSecrets, publishWorkerKey, withdrawWorkerKey } from './secret-box.js';
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
    throw e instanceof SlipwayError && USER_ERRORS.has(e.code) ? new SlipwayError('ERR_REGISTRY', `pulling ${qualified}: ${e.message}`) : e;
  }
  const r = parseReference(ref);
  const q = parseReference(qualified);
  const pulled = await resolveImage(layout, `${q.repository}:${q.tag}`);
  await updateRepositories(layout, (repos) => { (repos.Repositories[r.repository] ??= {})[r.tag] = pulled; });
  return true;
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
  const layout = new StoreLayout(opts.root);
  await ensureStore(layout);
  await sweepTmp(layout);
  const pool = new WorkerPool(opts.threads !== undefined ? { workers: opts.threads } : {});
  const blobs = new BlobStore(opts.registry);
  const cacheRedis: Redis = connect(opts.redisUrl, 'worker');
  cacheRedis.on('error', () => undefined);
  const metrics = new FarmMetrics();
  const sde = Number(process.env['SOURCE_DATE_EPOCH'] ?? 0);
  const lockDurationMs = opts.lockDurationMs ?? 30_000;
  const secretKey = await publishWorkerKey(cacheRedis, name, opts.root); // submit seals secrets for it

  const processor = async (job: Job<BuildJobData, BuildJobResult>): Promise<BuildJobResult> => {
    const data = job.data;
    const started = Date.now();
    const tmp = await makeTmpDir(layout, 'job');
    let seq = 0;
    const progress = (text: string) => {
      if (!text) return;
      // Fire and forget, but in order: both go out on the worker's one connection. The log is
      // the durable copy a follower replays from the start (events published before it
      // subscribed are gone); the progress event is for live listeners.
      void job.updateProgress({ seq: seq++, text }).catch(() => undefined);
      void job.log(text).catch(() => undefined);
    };
    // A job taken again (its worker died, or a retried fault) says so in the shared log.
    if (job.attemptsStarted > 1 || job.stalledCounter > 0) progress(`Taken again by ${name} (attempt ${job.attemptsStarted})\n`);
    metrics.running.inc();
    const { steps, onEvent, finishStep } = stepRecorder(metrics, progress);
    try {
      const tarFile = path.join(tmp, 'context.tar');
      await blobs.get(data.contextRepo, data.contextDigest, data.contextSize, tarFile);
      const ctx = path.join(tmp, 'context');
      await fs.mkdir(ctx, { mode: 0o755 });
      const { stream } = await decompressStream(createReadStream(tarFile));
      await applyTarToRoot(stream, ctx, '/');
      // The step lease lasts as long as the job lock: a dead worker's step is free again as
      // soon as its job is.
      const cache = new RedisCacheIndex({ redis: cacheRedis, blobs, layout, tenant: data.tenant, worker: name, build: String(job.id), leaseMs: lockDurationMs });
      const localTags = data.tags.map((t) => pushName(opts.registry, t));
      const { id } = await build({
        layout, contextDir: ctx, ...(data.dockerfile ? { dockerfile: data.dockerfile } : {}), tags: localTags,
        buildArgs: data.buildArgs, ...(data.target ? { target: data.target } : {}), noCache: data.noCache ?? false,
        pool, onEvent, remote: cache, sourceDateEpoch: sde, persistStatCache: false,
        sandbox: opts.policy?.sandbox ?? {}, allowHostNetwork: opts.policy?.entitlements.includes('network.host') ?? false,
        allowInsecure: opts.policy?.entitlements.includes('security.insecure') ?? false, tenant: data.tenant,
        ...(data.secrets ? { secrets: openSecrets(data.secrets, secretKey) } : {}),
        fetchBase: (ref) => fetchBase(layout, opts.registry, ref),
      });
      const pushed: Array<{ tag: string; digest: string }> = [];
      if (data.push) {
        for (const t of localTags) {
          const res = await pushImage({ layout, ref: t, insecureRegistries: [opts.registry] });
          for (const r of res) pushed.push({ tag: t, digest: r.digest });
          progress(`pushed ${t} ${res[0]?.digest ?? ''}\n`);
        }
      }
      metrics.builds.inc({ result: 'success' });
      metrics.buildSeconds.observe((Date.now() - started) / 1000);
      return { ok: true, imageId: id, pushed, steps, worker: name, durationMs: Date.now() - started };
    } catch (e) {
      finishStep();
      if (e instanceof SlipwayError && USER_ERRORS.has(e.code)) {
        const error = withLine(e.toData());
        progress(`error: ${error.message}\n`);
        metrics.builds.inc({ result: 'failure' });
        return { ok: false, error, steps, worker: name, durationMs: Date.now() - started };
      }
      const data2 = errorToData(e);
      metrics.builds.inc({ result: 'error' });
      log(`job ${job.id}: infrastructure fault, will be retried: ${data2.message}`);
      throw e instanceof Error ? e : new Error(String(e));
    } finally {
      metrics.running.dec();
      await fs.rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    }
  };

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

