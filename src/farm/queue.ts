import { Queue, type Job } from 'bullmq';
import { SlipwayError } from '../errors.js';
import { connect, QUEUE_NAME } from './connection.js';
import type { BuildJobData, BuildJobResult } from './job.js';

export type BuildQueue = Queue<BuildJobData, BuildJobResult>;

/**
 * Runs `fn` with the farm's queue on a connection of its own. A `producer` connection fails
 * fast when Redis is down (the API answers at once); a `worker` one waits through an outage
 * (a follower that must not give up on a running build).
 */
export async function withQueue<T>(redisUrl: string, role: 'producer' | 'worker', fn: (q: BuildQueue) => Promise<T>): Promise<T> {
  const conn = connect(redisUrl, role);
  conn.on('error', () => undefined);
  const queue: BuildQueue = new Queue<BuildJobData, BuildJobResult>(QUEUE_NAME, { connection: conn });
  queue.on('error', () => undefined);
  try {
    return await fn(queue);
  } finally {
    await queue.close().catch(() => undefined);
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
export async function followJob(queue: BuildQueue, id: string, onText: (text: string) => void, o: { signal?: AbortSignal; pollMs?: number } = {}): Promise<BuildJobResult | undefined> {
  let seen = 0;
  while (!o.signal?.aborted) {
    // State first, then the job: a job read before it finished has no result yet.
    const state = await queue.getJobState(id);
    if (state === 'unknown') throw new SlipwayError('ERR_IMAGE_NOT_FOUND', seen ? `build ${id} was removed` : `no such build: ${id}`);
    // The worker writes its last log lines before it finishes the job (same connection, in order).
    const { logs } = await queue.getJobLogs(id, seen, -1, true);
    for (const text of logs) onText(text);
    seen += logs.length;
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
