import { DelayedError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { connect, queueOptions, QUEUE_NAME } from './connection.js';
import { claimJob, workerQueueName } from './job-location.js';
import { beat, leave } from './routing.js';
import { FARM_PREFIX } from './namespace.js';
import type { BuildJobData, BuildJobResult } from './job.js';

/** What the worker's queues hand a build to: the job, its lock token, and whether it came by affinity. */
export type BuildProcessor = (job: Job<BuildJobData, BuildJobResult>, token: string | undefined, routed: boolean) => Promise<BuildJobResult>;

/** The result of a copy that stepped aside (the other copy built it); nobody reads it. */
function superseded(worker: string): BuildJobResult {
  return { ok: false, error: { code: 'ERR_INTERNAL', message: 'superseded: the build ran from its other queue' }, steps: [], worker, durationMs: 0 };
}

/** A job's own lock in bullmq: what a fencing check compares the job's token with. */
export function jobLockKey(queue: string, id: string): string {
  return `${FARM_PREFIX}:${queue}:${id}:lock`;
}

/**
 * A worker's two bullmq consumers: its own queue (builds routed to it by cache affinity) and the
 * shared one. Together they run at most `concurrency` builds: at capacity both stop fetching, and
 * a job fetched in the same instant is handed back (delayed a moment) rather than run beyond it.
 * Each build is claimed first (job-location.ts), so that of a routed build's two copies only one
 * builds. A heartbeat keeps the worker in the routing table while it runs.
 */
export function startWorkerQueues(opts: { redisUrl: string; name: string; concurrency: number; lockDurationMs: number; redis: Redis; processor: BuildProcessor; log: (l: string) => void }): { close(force: boolean): Promise<void> } {
  const own = workerQueueName(opts.name);
  let running = 0;
  const consumers: Worker<BuildJobData, BuildJobResult>[] = [];
  const conns: Redis[] = [];
  const gate = () => {
    for (const w of consumers) {
      if (running >= opts.concurrency && !w.isPaused()) void w.pause(true).catch(() => undefined);
      else if (running < opts.concurrency && w.isPaused()) w.resume();
    }
  };
  const run = (queue: string) => async (job: Job<BuildJobData, BuildJobResult>, token?: string): Promise<BuildJobResult> => {
    const later = async (ms: number): Promise<never> => {
      await job.moveToDelayed(Date.now() + ms, token);
      throw new DelayedError();
    };
    if (running >= opts.concurrency) return later(200);
    const claim = await claimJob(opts.redis, String(job.id), queue, opts.lockDurationMs);
    // Done by the other copy: step aside. Being built by it: look again within a lock's time
    // (its claim lapses if its worker died).
    if (claim.state !== 'run') return claim.state === 'done' ? superseded(opts.name) : later(Math.min(opts.lockDurationMs, 5000));
    running++;
    gate();
    const renew = setInterval(() => void claim.renew().catch(() => undefined), opts.lockDurationMs / 3);
    try {
      const result = await opts.processor(job, token, queue === own);
      await claim.finish();
      return result;
    } finally {
      clearInterval(renew);
      running--;
      gate();
    }
  };
  for (const queue of [own, QUEUE_NAME]) {
    const conn = connect(opts.redisUrl, 'worker');
    conn.on('error', () => undefined);
    conns.push(conn);
    const w = new Worker<BuildJobData, BuildJobResult>(queue, run(queue), {
      ...queueOptions(conn), concurrency: opts.concurrency, lockDuration: opts.lockDurationMs,
      stalledInterval: Math.max(1000, Math.floor(opts.lockDurationMs / 2)), maxStalledCount: 3, name: opts.name,
    });
    w.on('error', (e) => opts.log(`worker: ${e.message}`));
    consumers.push(w);
  }
  const alive = () => void beat(opts.redis, opts.name).catch(() => undefined);
  alive();
  const heart = setInterval(alive, 3000);
  return {
    close: async (force) => {
      clearInterval(heart);
      await leave(opts.redis, opts.name).catch(() => undefined);
      await Promise.all(consumers.map((w) => w.close(force)));
      for (const c of conns) c.disconnect();
    },
  };
}
