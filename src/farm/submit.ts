import fs from 'node:fs/promises';
import path from 'node:path';
import os from 'node:os';
import { Queue } from 'bullmq';
import { canonicalJson } from '../cache/key.js';
import { sha256Hex } from '../fs.js';
import { SlipwayError } from '../errors.js';
import { BlobStore, CONTEXT_REPO } from './blobs.js';
import { packContext } from '../snapshot/context-tar.js';
import { connect, QUEUE_NAME } from './connection.js';
import type { BuildJobData, BuildJobResult } from './job.js';
import { sealSecrets, type SealedSecretsJson } from './secret-box.js';


export interface SubmitOptions {
  redisUrl: string;
  registry: string;
  contextDir?: string;
  /** A context tar already made (the API receives one). */
  contextTar?: string;
  dockerfile?: string;
  tags: string[];
  buildArgs: Record<string, string>;
  target?: string;
  noCache?: boolean;
  push: boolean;
  tenant?: string;
  /** Retries for infrastructure faults (user errors are never retried). */
  attempts?: number;
  /** `--secret` values by id: sealed for the workers' keys before they leave this process. */
  secrets?: ReadonlyMap<string, Buffer>;
}

/** The secrets sealed for every worker key published in Redis (secret-box.ts). */
async function sealFor(redisUrl: string, secrets: ReadonlyMap<string, Buffer> | undefined): Promise<SealedSecretsJson | undefined> {
  if (!secrets || secrets.size === 0) return undefined;
  const conn = connect(redisUrl, 'producer');
  conn.on('error', () => undefined);
  try {
    return await sealSecrets(conn, secrets);
  } finally {
    conn.disconnect();
  }
}

/**
 * Uploads the context (content-addressed, skipped when the registry has it) and queues the
 * build. The job id is a digest of every input, so the same inputs submitted while a build of
 * them is queued or running attach to that job instead of building twice.
 */
export async function submitBuild(opts: SubmitOptions): Promise<{ jobId: string; deduplicated: boolean; data: BuildJobData }> {
  const blobs = new BlobStore(opts.registry);
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-submit-'));
  try {
    let tarFile = opts.contextTar;
    if (!tarFile) {
      if (!opts.contextDir) throw new SlipwayError('ERR_USAGE', 'submit needs a context');
      const st = await fs.stat(opts.contextDir).catch(() => undefined);
      if (!st?.isDirectory()) throw new SlipwayError('ERR_USAGE', `unable to prepare context: path "${opts.contextDir}" not found`);
      tarFile = path.join(tmp, 'context.tar');
      await packContext(opts.contextDir, tarFile, opts.dockerfile ?? 'Dockerfile');
    }
    const sealed = await sealFor(opts.redisUrl, opts.secrets);
    const put = await blobs.put(CONTEXT_REPO, tarFile);
    const data: BuildJobData = {
      contextDigest: put.digest, contextSize: put.size, contextRepo: CONTEXT_REPO,
      ...(opts.dockerfile ? { dockerfile: opts.dockerfile } : {}), tags: opts.tags, buildArgs: opts.buildArgs,
      ...(opts.target ? { target: opts.target } : {}), ...(opts.noCache ? { noCache: true } : {}), push: opts.push, tenant: opts.tenant ?? 'default',
      ...(sealed ? { secrets: sealed } : {}),
    };
    const jobId = `b-${sha256Hex(canonicalJson(data)).slice(0, 32)}`;
    const conn = connect(opts.redisUrl, 'producer');
    conn.on('error', () => undefined);
    const queue = new Queue<BuildJobData, BuildJobResult>(QUEUE_NAME, { connection: conn });
    try {
      const existing = await queue.getJob(jobId);
      const state = existing ? await existing.getState() : undefined;
      if (existing && (state === 'waiting' || state === 'active' || state === 'delayed' || state === 'prioritized' || state === 'waiting-children')) {
        return { jobId, deduplicated: true, data };
      }
      // A finished job of the same inputs: remove it so the id can be used again (a rebuild).
      if (existing) await existing.remove().catch(() => undefined);
      const added = await queue.add('build', data, {
        jobId, attempts: opts.attempts ?? 3, backoff: { type: 'exponential', delay: 1000 },
        removeOnComplete: { age: 7 * 24 * 3600 }, removeOnFail: { age: 7 * 24 * 3600 },
      });
      // Two submits racing past the check above: Redis keeps the first job of an id and
      // ignores the second add, whose local timestamp then differs from the stored one.
      const stored = await queue.getJob(jobId);
      return { jobId, deduplicated: stored !== undefined && stored.timestamp !== added.timestamp, data };
    } finally {
      await queue.close();
      conn.disconnect();
    }
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

/**
 * Follows a job: prints its output as the worker reports it, from the start (the job's log
 * is replayed, so nothing is lost to a late start, a retake or a Redis restart), and resolves
 * with its result when it finishes (a job that exhausted its retries resolves as a failed
 * result too). Polls: one LRANGE of what is new and one state read per tick.
 */
export async function followBuild(redisUrl: string, jobId: string, onText: (t: string) => void, opts: { pollMs?: number } = {}): Promise<BuildJobResult> {
  // Waits through Redis outages (retries forever), as a worker does.
  const conn = connect(redisUrl, 'worker');
  conn.on('error', () => undefined);
  const queue = new Queue<BuildJobData, BuildJobResult>(QUEUE_NAME, { connection: conn });
  queue.on('error', () => undefined);
  let printed = 0;
  const drain = async () => {
    const { logs } = await queue.getJobLogs(jobId, printed, -1);
    for (const l of logs) onText(l);
    printed += logs.length;
  };
  try {
    for (;;) {
      // State first, then the job: a job read before it finished has no result yet.
      const state = await queue.getJobState(jobId);
      if (state === 'unknown') throw new SlipwayError('ERR_USAGE', printed ? `build ${jobId} was removed` : `no such build: ${jobId}`);
      // The worker writes its last log lines before it finishes the job (same connection, in order).
      await drain();
      const job = state === 'completed' || state === 'failed' ? await queue.getJob(jobId) : undefined;
      if (state === 'completed' && job) return job.returnvalue;
      if (state === 'failed' && job) {
        return { ok: false, error: { code: 'ERR_INTERNAL', message: `build failed after ${job.attemptsMade} attempts: ${job.failedReason}` }, steps: [], worker: job.processedBy ?? '', durationMs: 0 };
      }
      await new Promise((r) => setTimeout(r, opts.pollMs ?? 150));
    }
  } finally {
    await queue.close();
    conn.disconnect();
  }
}

/** `farm status`: queue depth, workers, running builds. */
export async function farmStatus(redisUrl: string): Promise<{ counts: Record<string, number>; workers: Array<{ name: string; addr: string }>; running: Array<{ id: string; tags: string[]; startedAt: number | undefined }> }> {
  const conn = connect(redisUrl, 'producer');
  conn.on('error', () => undefined);
  const queue = new Queue<BuildJobData, BuildJobResult>(QUEUE_NAME, { connection: conn });
  try {
    const counts = await queue.getJobCounts('waiting', 'active', 'completed', 'failed', 'delayed', 'prioritized');
    // A named worker's blocking connection is called `<prefix>:<base64 queue>:w:<name>`.
    const workers = (await queue.getWorkers()).map((w) => {
      const raw = String(w['rawname'] ?? '');
      const at = raw.indexOf(':w:');
      return { name: at >= 0 ? raw.slice(at + 3) : raw, addr: String(w['addr'] ?? '') };
    });
    const running = (await queue.getActive()).map((j) => ({ id: String(j.id), tags: j.data.tags, startedAt: j.processedOn }));
    return { counts, workers, running };
  } finally {
    await queue.close();
    conn.disconnect();
  }
}

/** One build as the queue knows it: state, attempts, the worker that took it last, and its result. */
export interface BuildInfo {
  id: string;
  state: string;
  /** Finished runs (a completed user error counts 1); a retried fault adds one each time. */
  attemptsMade: number;
  /** Times a worker took it (a retake after a worker died counts too). */
  attemptsStarted: number;
  /** Times it was found without a live lock (its worker died) and put back in the queue. */
  stalledCounter: number;
  worker?: string;
  /** Milliseconds since the epoch: queued, last taken, finished. */
  enqueuedAt: number;
  processedOn?: number;
  finishedOn?: number;
  failedReason?: string;
  result?: BuildJobResult;
}

/** `farm status ID…`: what the queue knows of these builds (undefined for an unknown id). */
export async function buildInfo(redisUrl: string, ids: string[]): Promise<Array<BuildInfo | undefined>> {
  const conn = connect(redisUrl, 'producer');
  conn.on('error', () => undefined);
  const queue = new Queue<BuildJobData, BuildJobResult>(QUEUE_NAME, { connection: conn });
  try {
    return await Promise.all(ids.map(async (id): Promise<BuildInfo | undefined> => {
      // State first, then the job: a job read before it finished has no result yet.
      const state = await queue.getJobState(id);
      const job = state === 'unknown' ? undefined : await queue.getJob(id);
      if (!job) return undefined;
      return {
        id, state, enqueuedAt: job.timestamp, attemptsMade: job.attemptsMade, attemptsStarted: job.attemptsStarted, stalledCounter: job.stalledCounter,
        ...(job.processedBy ? { worker: job.processedBy } : {}), ...(job.processedOn ? { processedOn: job.processedOn } : {}),
        ...(job.finishedOn ? { finishedOn: job.finishedOn } : {}), ...(job.failedReason ? { failedReason: job.failedReason } : {}),
        ...(state === 'completed' && job.returnvalue ? { result: job.returnvalue } : {}),
      };
    }));
  } finally {
    await queue.close();
    conn.disconnect();
  }
}
