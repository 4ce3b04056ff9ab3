import fs from 'node:fs/promises';
import path from 'node:path';
import os from 'node:os';
import { canonicalJson } from '../cache/key.js';
import { sha256Hex } from '../fs.js';
import { SlipwayError } from '../errors.js';
import { BlobStore } from './blobs.js';
import { packContext } from '../context/pack.js';
import { readTarMember } from '../snapshot/tar-member.js';
import type { Credentials } from '../registry/client.js';
import { connect } from './connection.js';
import { DEFAULT_TENANT, checkTenant, contextRepo } from './namespace.js';
import { routeKeys } from './route-keys.js';
import { enqueueBuild } from './enqueue.js';
import { followJob, withJobQueues, withQueue } from './queue.js';
import { routingStats } from './routing.js';
import { listSharedMounts, type SharedMountInfo } from './cache-mount-record.js';
import type { BuildJobData, BuildJobResult } from './job.js';
import { sealSecretsFor, workerKeys, type SealedSecretsJson, type WorkerKeyJson } from './secret-box.js';


/** What a submit asks for: the build's own inputs as the job carries them, and where the farm is. */
export interface SubmitOptions extends Pick<BuildJobData, 'dockerfile' | 'tags' | 'buildArgs' | 'target' | 'noCache' | 'push'> {
  redisUrl: string;
  registry: string;
  contextDir?: string;
  /** A context tar already made (the API receives one). */
  contextTar?: string;
  /** The authenticated tenant (never a user's parameter); the operator's `default` when absent. */
  tenant?: string;
  /** Retries for infrastructure faults (user errors are never retried). */
  attempts?: number;
  /** Cache-affinity routing (default on) and how long the chosen worker has to start the build. */
  affinity?: boolean;
  affinityWaitMs?: number;
  /** The farm registry's credentials (the API server's, or the operator's). */
  registryCredentials?: Credentials | undefined;
  /** `--secret` values by id: sealed for the workers' keys before they leave this process. */
  secrets?: ReadonlyMap<string, Buffer>;
  /** Or secrets the submitter sealed itself (a tenant through the farm API): passed on as they are. */
  sealedSecrets?: SealedSecretsJson;
}

/** The workers' public keys, for a submitter that seals its secrets itself. */
export async function publishedWorkerKeys(redisUrl: string): Promise<WorkerKeyJson[]> {
  const conn = connect(redisUrl, 'producer');
  conn.on('error', () => undefined);
  try {
    return await workerKeys(conn);
  } finally {
    conn.disconnect();
  }
}

/** The secrets sealed for every worker key published in Redis (secret-box.ts). */
async function sealFor(redisUrl: string, secrets: ReadonlyMap<string, Buffer> | undefined): Promise<SealedSecretsJson | undefined> {
  if (!secrets || secrets.size === 0) return undefined;
  return sealSecretsFor(await publishedWorkerKeys(redisUrl), secrets);
}

/**
 * Uploads the context (content-addressed, skipped when the registry has it) and queues the
 * build. The job id is a digest of every input, so the same inputs submitted while a build of
 * them is queued or running attach to that job instead of building twice.
 */
export async function submitBuild(opts: SubmitOptions): Promise<{ jobId: string; deduplicated: boolean; data: BuildJobData; routedTo?: string }> {
  const blobs = new BlobStore(opts.registry, opts.registryCredentials);
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
    const tenant = checkTenant(opts.tenant ?? DEFAULT_TENANT);
    const sealed = opts.sealedSecrets ?? await sealFor(opts.redisUrl, opts.secrets);
    const put = await blobs.put(contextRepo(tenant), tarFile);
    const dockerfileText = (await readTarMember(tarFile, opts.dockerfile ?? 'Dockerfile').catch(() => undefined)) ?? '';
    const data: BuildJobData = {
      contextDigest: put.digest, contextSize: put.size, contextRepo: contextRepo(tenant),
      ...(opts.dockerfile ? { dockerfile: opts.dockerfile } : {}), tags: opts.tags, buildArgs: opts.buildArgs,
      ...(opts.target ? { target: opts.target } : {}), ...(opts.noCache ? { noCache: true } : {}), push: opts.push, tenant,
      routeKeys: routeKeys({ tenant, dockerfileText, dockerfile: opts.dockerfile ?? 'Dockerfile', contextDigest: put.digest, buildArgs: opts.buildArgs, target: opts.target }),
      ...(sealed ? { secrets: sealed } : {}),
    };
    const jobId = `b-${sha256Hex(canonicalJson(data)).slice(0, 32)}`;
    const conn = connect(opts.redisUrl, 'producer');
    conn.on('error', () => undefined);
    try {
      const q = await enqueueBuild(conn, jobId, data, { attempts: opts.attempts, affinity: opts.affinity, affinityWaitMs: opts.affinityWaitMs });
      return { jobId, deduplicated: q.deduplicated, data, ...(q.routedTo ? { routedTo: q.routedTo } : {}) };
    } finally {
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
  // Waits through Redis outages (a worker's connection retries forever).
  const result = await withJobQueues(redisUrl, 'worker', (qs) => followJob(qs, jobId, onText, { pollMs: opts.pollMs ?? 150 }));
  return result!;
}

/** `farm status`: queue depth, workers, running builds, and how builds were routed. */
export async function farmStatus(redisUrl: string): Promise<{ counts: Record<string, number>; workers: Array<{ name: string; addr: string }>; running: Array<{ id: string; tags: string[]; startedAt: number | undefined }>; routing: Awaited<ReturnType<typeof routingStats>>; cacheMounts: SharedMountInfo[] }> {
  return withQueue(redisUrl, 'producer', async (queue, conn) => {
    const counts = await queue.getJobCounts('waiting', 'active', 'completed', 'failed', 'delayed', 'prioritized');
    // A named worker's blocking connection is called `<prefix>:<base64 queue>:w:<name>`.
    const workers = (await queue.getWorkers()).map((w) => {
      const raw = String(w['rawname'] ?? '');
      const at = raw.indexOf(':w:');
      return { name: at >= 0 ? raw.slice(at + 3) : raw, addr: String(w['addr'] ?? '') };
    });
    const running = (await queue.getActive()).map((j) => ({ id: String(j.id), tags: j.data.tags, startedAt: j.processedOn }));
    return { counts, workers, running, routing: await routingStats(conn), cacheMounts: await listSharedMounts(conn) };
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
  return withJobQueues(redisUrl, 'producer', (qs) => Promise.all(ids.map(async (id): Promise<BuildInfo | undefined> => {
      const queue = await qs.queueFor(id);
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
