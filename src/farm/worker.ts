import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { SlipwayError, errorToData, type ErrorCode } from '../errors.js';
import { StoreLayout } from '../store/layout.js';
import { ensureStore, makeTmpDir, sweepTmp } from '../store/graph.js';
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

  const processor = async (job: Job<BuildJobData, BuildJobResult>): Promise<BuildJobResult> => {
    const data = job.data;
    const started = Date.now();
    const tmp = await makeTmpDir(layout, 'job');
    const steps: FarmStep[] = [];
    let seq = 0;
    const progress = (text: string) => {
      void job.updateProgress({ seq: seq++, text }).catch(() => undefined);
      void job.log(text.replace(/\n$/, '')).catch(() => undefined);
    };
    metrics.running.inc();
    try {
      const tarFile = path.join(tmp, 'context.tar');
      await blobs.get(data.contextRepo, data.contextDigest, data.contextSize, tarFile);
      const ctx = path.join(tmp, 'context');
      await fs.mkdir(ctx, { mode: 0o755 });
      const { stream } = await decompressStream(createReadStream(tarFile));
      await applyTarToRoot(stream, ctx, '/');
      const cache = new RedisCacheIndex({ redis: cacheRedis, blobs, layout, tenant: data.tenant, worker: name, build: String(job.id) });
      let current: FarmStep | undefined;
      const onEvent = (e: BuildEvent) => {
        if (e.type === 'step') current = undefined;
        if (e.type === 'cache-hit') {
          current = { n: e.n, text: '', hit: true, source: e.source ?? 'local', durationMs: 0 };
          steps.push(current);
          metrics.steps.inc({ outcome: 'hit', source: e.source ?? 'local' });
        }
        if (e.type === 'cache-miss') {
          current = { n: -1, text: '', hit: false, source: 'local', reason: e.reason, durationMs: Date.now() };
          steps.push(current);
          metrics.steps.inc({ outcome: 'miss', source: 'local' });
        }
        if (e.type === 'image' && current && !current.hit && current.durationMs > 1e12) {
          current.durationMs = Date.now() - current.durationMs;
          metrics.stepSeconds.observe(current.durationMs / 1000);
        }
        progress(renderLegacy(e));
      };
      const stepTexts: string[] = [];
      const tracking = (e: BuildEvent) => {
        if (e.type === 'step') stepTexts[e.n] = e.text;
        onEvent(e);
        if ((e.type === 'cache-hit' || e.type === 'cache-miss') && current) {
          const n = stepTexts.length - 1;
          current.n = n;
          current.text = stepTexts[n] ?? '';
        }
        if (e.type === 'summary') metrics.cacheSavedSeconds.inc(e.savedMs / 1000);
      };
      const localTags = data.tags.map((t) => pushName(opts.registry, t));
      const { id } = await build({
        layout, contextDir: ctx, ...(data.dockerfile ? { dockerfile: data.dockerfile } : {}), tags: localTags,
        buildArgs: data.buildArgs, ...(data.target ? { target: data.target } : {}), noCache: data.noCache ?? false,
        pool, onEvent: tracking, remote: cache, sourceDateEpoch: sde, persistStatCache: false,
        fetchBase: async (ref) => {
          // FROM an image this worker lacks: the farm's registry has it (pushed there once).
          try {
            await pullImage({ layout, ref: pushName(opts.registry, ref), insecureRegistries: [opts.registry] });
            const r = parseReference(ref);
            const q = parseReference(pushName(opts.registry, ref));
            const { resolveImage } = await import('../store/graph.js');
            const pulled = await resolveImage(layout, `${q.repository}:${q.tag}`);
            await updateRepositories(layout, (repos) => { (repos.Repositories[r.repository] ??= {})[r.tag] = pulled; });
            return true;
          } catch {
            return false;
          }
        },
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
      const data2 = errorToData(e);
      if (e instanceof SlipwayError && USER_ERRORS.has(e.code)) {
        progress(`error: ${e.message}\n`);
        metrics.builds.inc({ result: 'failure' });
        return { ok: false, error: data2, steps, worker: name, durationMs: Date.now() - started };
      }
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
    lockDuration: opts.lockDurationMs ?? 30_000,
    stalledInterval: Math.max(1000, Math.floor((opts.lockDurationMs ?? 30_000) / 2)),
    maxStalledCount: 3,
    name,
  });
  worker.on('error', (e) => log(`worker: ${e.message}`));
  const served = opts.metricsPort !== undefined ? await metrics.serve(opts.metricsPort) : undefined;
  const gauges = setInterval(() => {
    void (async () => {
      const { Queue } = await import('bullmq');
      const q = new Queue(QUEUE_NAME, { connection: cacheRedis });
      metrics.queueDepth.set(await q.count());
      metrics.activeWorkers.set((await q.getWorkers()).length);
      await q.close();
    })().catch(() => undefined);
  }, 5000);
  gauges.unref();
  log(`worker ${name}: waiting for builds on ${QUEUE_NAME}`);
  return {
    name,
    metricsPort: served?.port,
    close: async () => {
      clearInterval(gauges);
      const timeout = opts.shutdownTimeoutMs ?? 60_000;
      const graceful = worker.close();
      const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), timeout).unref());
      if ((await Promise.race([graceful.then(() => 'done' as const), timer])) === 'timeout') {
        log(`worker ${name}: shutdown timeout, handing back running jobs`);
        await worker.close(true);
      }
      await served?.close();
      await pool.close();
      cacheRedis.disconnect();
      workerConn.disconnect();
    },
  };
}

export { crypto };
