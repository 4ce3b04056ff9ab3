import type { Redis } from 'ioredis';
import { QUEUE_NAME } from './connection.js';
import { JobQueues, forgetJob, queuesOf, recordRoute, workerQueueName } from './job-location.js';
import { chooseWorker, countSubmission } from './routing.js';
import type { BuildJobData } from './job.js';

/** How a build is queued: retries, and cache-affinity routing. */
export interface EnqueueOptions {
  /** Retries for infrastructure faults (user errors are never retried). */
  attempts?: number | undefined;
  /** Offer the build first to the worker holding its leading steps (default on). */
  affinity?: boolean | undefined;
  /** How long that worker has to start it before any worker may (default 2 s). */
  affinityWaitMs?: number | undefined;
}

const ACTIVE = new Set(['waiting', 'active', 'delayed', 'prioritized', 'waiting-children']);
export const DEFAULT_AFFINITY_WAIT_MS = 2000;

/**
 * Queues build `jobId` unless a build of the same inputs is queued or running (then that one is
 * the answer). With affinity, a live worker that advertises the longest prefix of
 * `data.routeKeys` gets it in its own queue, and the shared queue gets a copy delayed by the
 * affinity wait: the build starts on that worker if it is free, else anywhere after the wait.
 */
export async function enqueueBuild(conn: Redis, jobId: string, data: BuildJobData, opts: EnqueueOptions): Promise<{ deduplicated: boolean; routedTo: string | undefined }> {
  const qs = new JobQueues(conn);
  try {
    const existing = await (await qs.queueFor(jobId)).getJob(jobId);
    const state = existing ? await existing.getState() : undefined;
    if (existing && state && ACTIVE.has(state)) return { deduplicated: true, routedTo: undefined };
    // A finished build of the same inputs: remove every copy so the id can be used again (a rebuild).
    for (const name of await queuesOf(conn, jobId)) {
      const old = await qs.named(name).getJob(jobId);
      if (old) await old.remove().catch(() => undefined);
    }
    await forgetJob(conn, jobId);
    const target = opts.affinity === false ? undefined : await chooseWorker(conn, data.routeKeys ?? []);
    const jobOpts = {
      jobId, attempts: opts.attempts ?? 3, backoff: { type: 'exponential', delay: 1000 },
      removeOnComplete: { age: 7 * 24 * 3600 }, removeOnFail: { age: 7 * 24 * 3600 },
    };
    let canonical = qs.named(QUEUE_NAME);
    if (target) {
      canonical = qs.named(workerQueueName(target));
      await recordRoute(conn, jobId, canonical.name);
      await canonical.add('build', data, jobOpts);
      await qs.named(QUEUE_NAME).add('build', data, { ...jobOpts, delay: opts.affinityWaitMs ?? DEFAULT_AFFINITY_WAIT_MS });
    }
    const added = target ? await canonical.getJob(jobId) : await canonical.add('build', data, jobOpts);
    await countSubmission(conn, target !== undefined).catch(() => undefined);
    // Two submits racing past the check above: Redis keeps the first job of an id and
    // ignores the second add, whose local timestamp then differs from the stored one.
    const stored = await canonical.getJob(jobId);
    return { deduplicated: !target && stored !== undefined && added !== undefined && stored.timestamp !== added.timestamp, routedTo: target };
  } finally {
    await qs.close();
  }
}
