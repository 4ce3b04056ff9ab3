import { Redis, type RedisOptions } from 'ioredis';
import { FARM_PREFIX } from './namespace.js';

/** The queue every producer and worker of one farm shares. */
export const QUEUE_NAME = 'slipway-builds';

/**
 * Options of every bullmq queue and worker of the farm: its keys live under the farm's prefix
 * (`slipway:<queue>:…`), so the workers' Redis ACL user can be limited to `~slipway:*`.
 */
export function queueOptions(connection: Redis): { connection: Redis; prefix: string } {
  return { connection, prefix: FARM_PREFIX };
}

/** `--redis URL` > `$REDIS_URL` > `redis://127.0.0.1:6379`. */
export function redisUrl(flag: string | undefined): string {
  return flag ?? process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';
}

/** `--registry HOST[:PORT]` > `$SLIPWAY_REGISTRY`. */
export function registryHost(flag: string | undefined): string | undefined {
  return flag ?? process.env['SLIPWAY_REGISTRY'] ?? undefined;
}

/**
 * An ioredis connection. Workers block on Redis and must wait through outages
 * (`maxRetriesPerRequest: null`, as bullmq requires); producers fail fast instead. The ready
 * check stays on: a restarted Redis answers LOADING until its AOF is read, and only the ready
 * check holds commands back until then (without it a build fails over with an error).
 */
export function connect(url: string, role: 'worker' | 'producer'): Redis {
  const opts: RedisOptions = role === 'worker'
    ? { maxRetriesPerRequest: null, retryStrategy: (n) => Math.min(n * 200, 2000) }
    : { maxRetriesPerRequest: 1, retryStrategy: (n) => (n > 3 ? null : n * 200) };
  return new Redis(url, { ...opts, lazyConnect: false });
}
