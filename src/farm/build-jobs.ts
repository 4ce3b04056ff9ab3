/**
 * Reading farm jobs for the API: a build's state, result and log, and following it to the end
 * (stoppable when the HTTP client goes away). It overlaps `followBuild`/`buildInfo` in
 * submit.ts, which the CLI uses; merging them is left to do.
 */
import { Queue, type Job } from 'bullmq';
import { connect } from './connection.js';
import { JobQueues } from './job-location.js';
import type { BuildJobData, BuildJobResult } from './job.js';

/** A farm build's state, in the API's words. */
export type FarmBuildStatus = 'queued' | 'running' | 'succeeded' | 'failed';

/** `GET /slipway/v1/builds/{id}`: what the farm knows of one build. */
export interface FarmBuildJson {
  id: string;
  status: FarmBuildStatus;
  /** bullmq's own state (`waiting`, `delayed`, `active`, `completed`, `failed`, ...). */
  state: string;
  tags: string[];
  push: boolean;
  tenant: string;
  /** Attempts made so far; more than one means an infrastructure fault was retried. */
  attempts: number;
  /** The worker that took it last. */
  worker: string | null;
  submittedAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  /** The job's result once it finished (a build that exhausted its retries gets a failed one). */
  result: BuildJobResult | null;
  /** The build's output so far, one entry per progress message (every attempt's). */
  logs: string[];
}

/** How often a follower looks for new log lines and the end of the build. */
const POLL_MS = 250;

const iso = (ms: number | undefined) => (ms ? new Date(ms).toISOString() : null);

/**
 * Runs `fn` with the queue that holds build `id` now, on its own connection (a producer's: it
 * fails fast when Redis is down); `fn` may ask again (a routed build's record can move).
 */
async function withQueue<T>(redisUrl: string, id: string, fn: (q: Queue<BuildJobData, BuildJobResult>, locate: () => Promise<Queue<BuildJobData, BuildJobResult>>) => Promise<T>): Promise<T> {
  const conn = connect(redisUrl, 'producer');
  conn.on('error', () => undefined);
  const qs = new JobQueues(conn);
  try {
    return await fn(await qs.queueFor(id), () => qs.queueFor(id));
  } finally {
    await qs.close();
    conn.disconnect();
  }
}

/** The result of a finished job; undefined while it is queued or running. */
function finishedResult(job: Job<BuildJobData, BuildJobResult>, state: string): BuildJobResult | undefined {
  if (state === 'completed') return job.returnvalue;
  if (state !== 'failed') return undefined;
  // Only infrastructure faults fail a job (a user's error completes it): say so, as followBuild does.
  const message = `build failed after ${job.attemptsMade} attempts: ${job.failedReason}`;
  return { ok: false, error: { code: 'ERR_INTERNAL', message }, steps: [], worker: '', durationMs: 0 };
}

function statusOf(state: string, result: BuildJobResult | undefined): FarmBuildStatus {
  if (result) return result.ok ? 'succeeded' : 'failed';
  return state === 'active' ? 'running' : 'queued';
}

/** One build's state, result and log; undefined when the farm has no job of that id. */
export async function readFarmBuild(redisUrl: string, id: string): Promise<FarmBuildJson | undefined> {
  return withQueue(redisUrl, id, async (queue) => {
    const job = await queue.getJob(id);
    if (!job) return undefined;
    const state = await job.getState();
    if (state === 'unknown') return undefined;
    const result = finishedResult(job, state);
    const { logs } = await queue.getJobLogs(id, 0, -1, true);
    return {
      id, status: statusOf(state, result), state, tags: job.data.tags, push: job.data.push, tenant: job.data.tenant,
      attempts: job.attemptsMade, worker: job.processedBy ?? null, submittedAt: new Date(job.timestamp).toISOString(), startedAt: iso(job.processedOn),
      finishedAt: iso(job.finishedOn), result: result ?? null, logs,
    };
  });
}

/**
 * Follows a build: replays its log from the start, then passes on each new line as the worker
 * writes it, and resolves with the result when the build finishes. The log is the record the
 * worker keeps of every progress message, so a follower that arrives late misses nothing and
 * one that arrives twice sees the same lines. Resolves undefined when `signal` aborts first;
 * rejects when the job disappears (removed) or Redis fails.
 */
export async function followFarmBuild(redisUrl: string, id: string, onText: (text: string) => void, signal: AbortSignal): Promise<BuildJobResult | undefined> {
  return withQueue(redisUrl, id, async (_first, locate) => {
    // Each copy's log is read from where it was left (a routed build's record can move).
    const seen = new Map<string, number>();
    while (!signal.aborted) {
      const queue = await locate();
      const drain = async () => {
        const from = seen.get(queue.name) ?? 0;
        const { logs } = await queue.getJobLogs(id, from, -1, true);
        // Each entry is one progress text as the worker rendered it (newlines included).
        for (const text of logs) onText(text);
        seen.set(queue.name, from + logs.length);
      };
      const job = await queue.getJob(id);
      const state = job ? await job.getState() : 'unknown';
      if (!job || state === 'unknown') throw new Error(`build ${id} disappeared from the queue`);
      // The worker writes its last line before it completes the job: drain after reading the state.
      await drain();
      const result = finishedResult(job, state);
      if (result) return result;
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, POLL_MS);
        function done() {
          clearTimeout(t);
          signal.removeEventListener('abort', done);
          resolve();
        }
        signal.addEventListener('abort', done, { once: true });
      });
    }
    return undefined;
  });
}
