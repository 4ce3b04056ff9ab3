import fs from 'node:fs/promises';
import path from 'node:path';
import os from 'node:os';
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import tarFs from 'tar-fs';
import { Queue, QueueEvents, type Job } from 'bullmq';
import { IgnoreMatcher, parseDockerignore } from '../context/dockerignore.js';
import { canonicalJson } from '../cache/key.js';
import { sha256Hex } from '../fs.js';
import { SlipwayError } from '../errors.js';
import { BlobStore, CONTEXT_REPO } from './blobs.js';
import { connect, QUEUE_NAME } from './connection.js';
import type { BuildJobData, BuildJobProgress, BuildJobResult } from './job.js';

/**
 * Packs a context folder as the docker CLI sends it: `.dockerignore` applied (the Dockerfile
 * and `.dockerignore` always included), names sorted, modes kept (umask 0), owners 0:0.
 */
export async function packContext(dir: string, out: string, dockerfile = 'Dockerfile'): Promise<void> {
  const ignoreText = await fs.readFile(path.join(dir, '.dockerignore'), 'utf8').catch(() => '');
  const matcher = new IgnoreMatcher(parseDockerignore(ignoreText));
  const always = new Set([dockerfile, '.dockerignore']);
  const pack = tarFs.pack(dir, {
    sort: true,
    umask: 0,
    ignore: (name: string) => {
      const rel = path.relative(dir, name).split(path.sep).join('/');
      return rel !== '' && !always.has(rel) && matcher.isExcluded(rel);
    },
    map: (h: { uid: number; gid: number; uname?: string; gname?: string }) => {
      h.uid = 0;
      h.gid = 0;
      h.uname = '';
      h.gname = '';
      return h;
    },
  });
  await pipeline(pack, createWriteStream(out));
}

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
    const put = await blobs.put(CONTEXT_REPO, tarFile);
    const data: BuildJobData = {
      contextDigest: put.digest, contextSize: put.size, contextRepo: CONTEXT_REPO,
      ...(opts.dockerfile ? { dockerfile: opts.dockerfile } : {}), tags: opts.tags, buildArgs: opts.buildArgs,
      ...(opts.target ? { target: opts.target } : {}), ...(opts.noCache ? { noCache: true } : {}), push: opts.push, tenant: opts.tenant ?? 'default',
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
      await queue.add('build', data, {
        jobId, attempts: opts.attempts ?? 3, backoff: { type: 'exponential', delay: 1000 },
        removeOnComplete: { age: 7 * 24 * 3600 }, removeOnFail: { age: 7 * 24 * 3600 },
      });
      return { jobId, deduplicated: false, data };
    } finally {
      await queue.close();
      conn.disconnect();
    }
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

/**
 * Follows a job: prints its progress as the worker reports it, and resolves with its result
 * when it finishes (a job that exhausted its retries resolves as a failed result too).
 */
export async function followBuild(redisUrl: string, jobId: string, onText: (t: string) => void): Promise<BuildJobResult> {
  const conn = connect(redisUrl, 'worker');
  const eventsConn = connect(redisUrl, 'worker');
  for (const c of [conn, eventsConn]) c.on('error', () => undefined);
  const queue = new Queue<BuildJobData, BuildJobResult>(QUEUE_NAME, { connection: conn });
  const events = new QueueEvents(QUEUE_NAME, { connection: eventsConn });
  try {
    await events.waitUntilReady();
    let lastSeq = -1;
    events.on('progress', ({ jobId: id, data }) => {
      if (id !== jobId) return;
      const p = data as unknown as BuildJobProgress;
      if (typeof p === 'object' && p && typeof p.text === 'string' && p.seq > lastSeq) {
        lastSeq = p.seq;
        onText(p.text);
      }
    });
    const job: Job<BuildJobData, BuildJobResult> | undefined = await queue.getJob(jobId);
    if (!job) throw new SlipwayError('ERR_USAGE', `no such build: ${jobId}`);
    for (;;) {
      const state = await job.getState();
      if (state === 'completed') return (await queue.getJob(jobId))!.returnvalue;
      if (state === 'failed') {
        const j = (await queue.getJob(jobId))!;
        return { ok: false, error: { code: 'ERR_INTERNAL', message: `build failed after ${j.attemptsMade} attempts: ${j.failedReason}` }, steps: [], worker: '', durationMs: 0 };
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    await events.close();
    await queue.close();
    conn.disconnect();
    eventsConn.disconnect();
  }
}

/** `farm status`: queue depth, workers, running builds. */
export async function farmStatus(redisUrl: string): Promise<{ counts: Record<string, number>; workers: Array<{ name: string; addr: string }>; running: Array<{ id: string; tags: string[]; startedAt: number | undefined }> }> {
  const conn = connect(redisUrl, 'producer');
  conn.on('error', () => undefined);
  const queue = new Queue<BuildJobData, BuildJobResult>(QUEUE_NAME, { connection: conn });
  try {
    const counts = await queue.getJobCounts('waiting', 'active', 'completed', 'failed', 'delayed', 'prioritized');
    const workers = (await queue.getWorkers()).map((w) => ({ name: String(w['name'] ?? w['id'] ?? ''), addr: String(w['addr'] ?? '') }));
    const running = (await queue.getActive()).map((j) => ({ id: String(j.id), tags: j.data.tags, startedAt: j.processedOn }));
    return { counts, workers, running };
  } finally {
    await queue.close();
    conn.disconnect();
  }
}
