import type { Redis } from 'ioredis';
import { FARM_PREFIX } from './namespace.js';

/**
 * Cache-affinity routing state in Redis: which workers are alive, what each holds (a set of
 * route keys: the leading-step chains of the builds it ran, see route-keys.ts), and counters
 * for `farm status` (builds, steps, cache hits, builds that came by affinity).
 */
const LIVE = `${FARM_PREFIX}:workers`;
const heartbeat = (w: string) => `${FARM_PREFIX}:worker:${w}`;
const held = (w: string) => `${FARM_PREFIX}:affinity:${w}`;
const stats = (w: string) => `${FARM_PREFIX}:stats:${w}`;
const FARM_STATS = `${FARM_PREFIX}:stats`;

/** A worker's advertisement is capped: beyond it, random members are dropped. */
const MAX_HELD = 50_000;
/** A worker that has not said it is alive for this long is not routed to. */
export const HEARTBEAT_MS = 10_000;

/** Says the worker is alive (call every few seconds). */
export async function beat(redis: Redis, worker: string): Promise<void> {
  await redis.multi().sadd(LIVE, worker).set(heartbeat(worker), String(Date.now()), 'PX', HEARTBEAT_MS).exec();
}

/** Takes the worker out of routing at once (a clean shutdown). */
export async function leave(redis: Redis, worker: string): Promise<void> {
  await redis.del(heartbeat(worker));
}

/** Advertises the route keys of a build this worker holds now, and counts the build. */
export async function advertise(redis: Redis, worker: string, keys: string[], build: { steps: number; hits: number; routed: boolean }): Promise<void> {
  const m = redis.multi();
  if (keys.length) m.sadd(held(worker), ...keys);
  m.hincrby(stats(worker), 'builds', 1).hincrby(stats(worker), 'steps', build.steps).hincrby(stats(worker), 'hits', build.hits);
  if (build.routed) m.hincrby(stats(worker), 'routed', 1);
  await m.exec();
  const n = await redis.scard(held(worker));
  if (n > MAX_HELD) await redis.spop(held(worker), n - MAX_HELD);
}

/** The live workers' names. */
async function liveWorkers(redis: Redis): Promise<string[]> {
  const names = await redis.smembers(LIVE);
  if (names.length === 0) return [];
  const beats = await redis.mget(...names.map(heartbeat));
  return names.filter((_, i) => beats[i] !== null);
}

/**
 * The live worker holding the longest prefix of `keys` (ties go to the one with fewer builds
 * routed so far); undefined when none holds even the first.
 */
export async function chooseWorker(redis: Redis, keys: string[]): Promise<string | undefined> {
  if (keys.length === 0) return undefined;
  let best: { name: string; depth: number } | undefined;
  for (const name of await liveWorkers(redis)) {
    const has = (await redis.smismember(held(name), ...keys)) as number[];
    let depth = 0;
    while (depth < keys.length && has[depth] === 1) depth++;
    if (depth > 0 && (!best || depth > best.depth)) best = { name, depth };
  }
  return best?.name;
}

/** Counts a submitted build, and whether it was routed by affinity. */
export async function countSubmission(redis: Redis, routed: boolean): Promise<void> {
  const m = redis.multi().hincrby(FARM_STATS, 'submitted', 1);
  if (routed) m.hincrby(FARM_STATS, 'routed', 1);
  await m.exec();
}

/** One worker's line in `farm status`. */
export interface WorkerRouting {
  name: string;
  alive: boolean;
  builds: number;
  /** Cache hits over steps, 0..1 (null before its first step). */
  hitRate: number | null;
  /** Builds that came through its own queue (by affinity). */
  routed: number;
  heldKeys: number;
}

/** Per-worker counters, and the share of submitted builds routed by affinity (null before any). */
export async function routingStats(redis: Redis): Promise<{ workers: WorkerRouting[]; submitted: number; routedShare: number | null }> {
  const names = (await redis.smembers(LIVE)).sort();
  const alive = new Set(await liveWorkers(redis));
  const workers: WorkerRouting[] = [];
  for (const name of names) {
    const h = await redis.hgetall(stats(name));
    const steps = Number(h['steps'] ?? 0);
    workers.push({
      name, alive: alive.has(name), builds: Number(h['builds'] ?? 0), hitRate: steps ? Number(h['hits'] ?? 0) / steps : null,
      routed: Number(h['routed'] ?? 0), heldKeys: await redis.scard(held(name)),
    });
  }
  const f = await redis.hgetall(FARM_STATS);
  const submitted = Number(f['submitted'] ?? 0);
  return { workers, submitted, routedShare: submitted ? Number(f['routed'] ?? 0) / submitted : null };
}
