import fs from 'node:fs/promises';
import path from 'node:path';
import os from 'node:os';
import { canonicalJson } from '../cache/key.js';
import { sha256Hex } from '../fs.js';
import { SlipwayError } from '../errors.js';
import { BlobStore, CONTEXT_REPO } from './blobs.js';
import { packContext } from '../context/pack.js';
import { followJob, withQueue } from './queue.js';
import { connect } from './connection.js';
import type { BuildJobData, BuildJobResult } from './job.js';
import { sealSecrets, type SealedSecretsJson } from './secret-box.js';


/** What a submit asks for: the build's own inputs as the job carries them, and where the farm is. */
export interface SubmitOptions extends Pick<BuildJobData, 'dockerfile' | 'tags' | 'buildArgs' | 'target' | 'noCache' | 'push'> {
  redisUrl: string;
  registry: string;
  contextDir?: string;
  /** A context tar already made (the API receives one). */
  contextTar?: string;
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
      if (!opts.contextDir) throw new SlipwayError('ERR_INVALID_OPTION', 'submit needs a context');
      const st = await fs.stat(opts.contextDir).catch(() => undefined);
      if (!st?.isDirectory()) throw new SlipwayError('ERR_FILE_NOT_FOUND', `unable to prepare context: path "${opts.contextDir}" not found`);
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
    return await withQueue(opts.redisUrl, 'producer', async (queue) => {
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
    });
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
  // Waits through Redis outages (a worker's connection retries forever).
  const result = await withQueue(redisUrl, 'worker', (queue) => followJob(queue, jobId, onText, { pollMs: opts.pollMs ?? 150 }));
  return result!;
}

/** `farm status`: queue depth, workers, running builds. */
export async function farmStatus(redisUrl: string): Promise<{ counts: Record<string, number>; workers: Array<{ name: string; addr: string }>; running: Array<{ id: string; tags: string[]; startedAt: number | undefined }> }> {
  return withQueue(redisUrl, 'producer', async (queue) => {
    const counts = await queue.getJobCounts('waiting', 'active', 'completed', 'failed', 'delayed', 'prioritized');
    // A named worker's blocking connection is called `<prefix>:<base64 queue>:w:<name>`.
    const workers = (await queue.getWorkers()).map((w) => {
      const raw = String(w['rawname'] ?? '');
      const at = raw.indexOf(':w:');
      return { name: at >= 0 ? raw.slice(at + 3) : raw, addr: String(w['addr'] ?? '') };
    });
    const running = (await queue.getActive()).map((j) => ({ id: String(j.id), tags: j.data.tags, startedAt: j.processedOn }));
    return { counts, workers, running };
  });
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
  return withQueue(redisUrl, 'producer', (queue) => Promise.all(ids.map(async (id): Promise<BuildInfo | undefined> => {
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
    })));
}
