import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { FARM_PREFIX } from './namespace.js';
import { QUEUE_NAME, queueOptions } from './connection.js';
import type { BuildJobData, BuildJobResult } from './job.js';

/**
 * Where a build's job lives. A build routed by cache affinity is queued twice under one id: in
 * the chosen worker's own queue, and in the shared queue delayed by the affinity wait (the
 * fallback, should that worker be busy or dead). Whichever copy starts first claims the build
 * (`claim`, a lease its runner renews); the other, when it starts, finds the claim and steps
 * aside. So a build's record is: the copy that finished it (`done`), else the one running it
 * (`claim`), else the one it was routed to (`route`), else the shared queue's.
 */
const TTL_SECONDS = 7 * 24 * 3600;
const key = (kind: 'route' | 'claim' | 'done', id: string) => `${FARM_PREFIX}:job:${kind}:${id}`;

/** The bullmq queue of one worker's routed builds. */
export function workerQueueName(worker: string): string {
  return `${QUEUE_NAME}.w.${worker.replace(/[^A-Za-z0-9_.-]/g, '_')}`;
}

/** The queue holding the record of build `id`. */
export async function locateJob(redis: Redis, id: string): Promise<string> {
  const [done, claim, route] = await redis.mget(key('done', id), key('claim', id), key('route', id));
  return done ?? claim ?? route ?? QUEUE_NAME;
}

/** Every queue that may hold a copy of build `id`. */
export async function queuesOf(redis: Redis, id: string): Promise<string[]> {
  const found = await redis.mget(key('done', id), key('claim', id), key('route', id));
  return [...new Set([QUEUE_NAME, ...found.filter((q): q is string => q !== null)])];
}

/** Records that `id` was routed to `queue` (before its jobs are added). */
export async function recordRoute(redis: Redis, id: string, queue: string): Promise<void> {
  await redis.set(key('route', id), queue, 'EX', TTL_SECONDS);
}

/** Forgets where an earlier build of the same id went (a rebuild of the same inputs). */
export async function forgetJob(redis: Redis, id: string): Promise<void> {
  await redis.del(key('route', id), key('claim', id), key('done', id));
}

const CLAIM = `
if redis.call('exists', KEYS[2]) == 1 then return 'done' end
local c = redis.call('get', KEYS[1])
if c == false or c == ARGV[1] then
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 'run'
end
return 'busy'`;

const RENEW = `
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0`;

/**
 * Claims build `id` for the copy in `queue`: 'run' (ours: build it, renewing with the returned
 * handle), 'busy' (the other copy is running it: look again later) or 'done' (the other copy
 * finished it: step aside).
 */
export async function claimJob(redis: Redis, id: string, queue: string, ms: number): Promise<{ state: 'run'; renew(): Promise<void>; finish(): Promise<void> } | { state: 'busy' | 'done' }> {
  const state = String(await redis.eval(CLAIM, 2, key('claim', id), key('done', id), queue, String(ms)));
  if (state !== 'run') return { state: state === 'done' ? 'done' : 'busy' };
  return {
    state: 'run',
    renew: async () => { await redis.eval(RENEW, 1, key('claim', id), queue, String(ms)); },
    finish: async () => {
      await redis.multi().set(key('done', id), queue, 'EX', TTL_SECONDS).del(key('claim', id)).exec();
    },
  };
}

/** Queues of one connection, one per name: the record of each build is looked up before each use. */
export class JobQueues {
  private readonly queues = new Map<string, Queue<BuildJobData, BuildJobResult>>();

  constructor(private readonly conn: Redis) {}

  /** The queue that holds build `id`'s record now (it moves when a fallback copy takes over). */
  async queueFor(id: string): Promise<Queue<BuildJobData, BuildJobResult>> {
    return this.named(await locateJob(this.conn, id));
  }

  named(name: string): Queue<BuildJobData, BuildJobResult> {
    let q = this.queues.get(name);
    if (!q) {
      q = new Queue<BuildJobData, BuildJobResult>(name, queueOptions(this.conn));
      q.on('error', () => undefined);
      this.queues.set(name, q);
    }
    return q;
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close().catch(() => undefined)));
  }
}
