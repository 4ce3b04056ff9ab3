import { Queue, type Job } from 'bullmq';
import { SlipwayError } from '../errors.js';
import type { Redis } from 'ioredis';
import { connect, queueOptions, QUEUE_NAME } from './connection.js';
import { JobQueues } from './job-location.js';
import type { BuildJobData, BuildJobResult } from './job.js';

export type BuildQueue = Queue<BuildJobData, BuildJobResult>;

/**
 * Runs `fn` with the farm's queue on a connection of its own. A `producer` connection fails
 * fast when Redis is down (the API answers at once); a `worker` one waits through an outage
 * (a follower that must not give up on a running build).
 */
export async function withQueue<T>(redisUrl: string, role: 'producer' | 'worker', fn: (q: BuildQueue, conn: Redis) => Promise<T>): Promise<T> {
  const conn = connect(redisUrl, role);
  conn.on('error', () => undefined);
  const queue: BuildQueue = new Queue<BuildJobData, BuildJobResult>(QUEUE_NAME, queueOptions(conn));
  queue.on('error', () => undefined);
  try {
    return await fn(queue, conn);
  } finally {
    await queue.close().catch(() => undefined);
    conn.disconnect();
  }
}

/**
 * Runs `fn` with the farm's queues on a connection of its own, for reading builds whose record
 * may be in a worker's own queue (a build routed by cache affinity): `qs.queueFor(id)` finds it.
 */
export async function withJobQueues<T>(redisUrl: string, role: 'producer' | 'worker', fn: (qs: JobQueues, conn: Redis) => Promise<T>): Promise<T> {
  const conn = connect(redisUrl, role);
  conn.on('error', () => undefined);
  const qs = new JobQueues(conn);
  try {
    return await fn(qs, conn);
  } finally {
    await qs.close();
    conn.disconnect();
  }
}

/**
 * The result of a finished job; undefined while it is queued or running. Only infrastructure
 * faults fail a job (a user's error completes it with a failed result), so a failed job means
 * its retries ran out: that becomes a failed result too.
 */
export function finishedResult(job: Job<BuildJobData, BuildJobResult>, state: string): BuildJobResult | undefined {
  if (state === 'completed') return job.returnvalue;
  if (state !== 'failed') return undefined;
  const message = `build failed after ${job.attemptsMade} attempts: ${job.failedReason}`;
  return { ok: false, error: { code: 'ERR_INTERNAL', message }, steps: [], worker: job.processedBy ?? '', durationMs: 0 };
}

/**
 * Follows a job: replays its log from the start, then passes on each new entry as the worker
 * writes it (an entry is one progress text, newlines included), and resolves with the result
 * when the job finishes. The log is the record the worker keeps of every progress message, so
 * a follower that arrives late, or twice, misses nothing. Resolves undefined when `signal`
 * aborts first; fails when the job is unknown or removed meanwhile.
 */
export async function followJob(qs: JobQueues, id: string, onText: (text: string) => void, o: { signal?: AbortSignal; pollMs?: number } = {}): Promise<BuildJobResult | undefined> {
  // The record can move (a routed build taken by the fallback copy): located on each tick, and
  // each copy's log read from where it was left.
  const seen = new Map<string, number>();
  while (!o.signal?.aborted) {
    const queue = await qs.queueFor(id);
    // State first, then the job: a job read before it finished has no result yet.
    const state = await queue.getJobState(id);
    if (state === 'unknown') throw new SlipwayError('ERR_IMAGE_NOT_FOUND', seen.size ? `build ${id} was removed` : `no such build: ${id}`);
    // The worker writes its last log lines before it finishes the job (same connection, in order).
    const from = seen.get(queue.name) ?? 0;
    const { logs } = await queue.getJobLogs(id, from, -1, true);
    for (const text of logs) onText(text);
    seen.set(queue.name, from + logs.length);
    const job = state === 'completed' || state === 'failed' ? await queue.getJob(id) : undefined;
    const result = job ? finishedResult(job, state) : undefined;
    if (result) return result;
    await pause(o.pollMs ?? 200, o.signal);
  }
  return undefined;
}

function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise<void>((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
