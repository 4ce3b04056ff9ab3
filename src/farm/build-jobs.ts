/**
 * Reading farm jobs for the API: a build's state, result and log, and following it to the end
 * (stoppable when the HTTP client goes away), on the queue helpers `submit.ts` shares.
 */
import type { BuildJobResult } from './job.js';
import { finishedResult, followJob, withJobQueues } from './queue.js';

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

const iso = (ms: number | undefined) => (ms ? new Date(ms).toISOString() : null);

function statusOf(state: string, result: BuildJobResult | undefined): FarmBuildStatus {
  if (result) return result.ok ? 'succeeded' : 'failed';
  return state === 'active' ? 'running' : 'queued';
}

/** One build's state, result and log; undefined when the farm has no job of that id. */
export async function readFarmBuild(redisUrl: string, id: string): Promise<FarmBuildJson | undefined> {
  return withJobQueues(redisUrl, 'producer', async (qs) => {
    const queue = await qs.queueFor(id);
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
  return withJobQueues(redisUrl, 'producer', (qs) => followJob(qs, id, onText, { signal, pollMs: 250 }));
}
