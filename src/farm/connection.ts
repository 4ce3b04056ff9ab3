import { Redis, type RedisOptions } from 'ioredis';
import { FARM_PREFIX } from './namespace.js';
import { SlipwayError } from '../errors.js';

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
  const sentinel = parseSentinelUrl(url);
  const opts: RedisOptions = role === 'worker'
    ? { maxRetriesPerRequest: null, retryStrategy: (n) => Math.min(n * 200, 2000) }
    : sentinel ? PRODUCER_BEHIND_SENTINEL : { maxRetriesPerRequest: 1, retryStrategy: (n) => (n > 3 ? null : n * 200) };
  if (sentinel) return new Redis({ ...sentinel, ...opts, lazyConnect: false });
  return new Redis(url, { ...opts, lazyConnect: false });
}

/**
 * A producer behind Sentinel rides out a failover instead of failing fast: between the
 * replica's promotion and the sentinels' switch to it, the sentinels still name the dead master,
 * and each reconnect asks them again. Up to about 15 s, longer than a failover with Sentinel's
 * usual timings (down-after 5 s is the operator's to shorten); a Redis that stays down still
 * fails the command with an error.
 */
const PRODUCER_BEHIND_SENTINEL: RedisOptions = {
  maxRetriesPerRequest: 20,
  retryStrategy: (n) => (n > 20 ? null : Math.min(n * 100, 1000)),
};

/**
 * `redis-sentinel://[USER:PASSWORD@]HOST:PORT[,HOST:PORT…]/MASTER[/DB]`: the farm's Redis
 * behind Sentinel (ioredis asks the sentinels for the master and follows a failover). The
 * credentials are the master's (the farm's ACL user); sentinels are asked without them.
 * Undefined for any other URL.
 */
export function parseSentinelUrl(url: string): RedisOptions | undefined {
  const m = /^redis-sentinel:\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/]+)\/([^/]+)(?:\/(\d+))?\/?$/.exec(url);
  if (!m) {
    if (url.startsWith('redis-sentinel:')) throw new SlipwayError('ERR_INVALID_OPTION', `invalid Sentinel URL ${JSON.stringify(url.replace(/:[^:@/]*@/, ':***@'))}: use redis-sentinel://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER`);
    return undefined;
  }
  const sentinels = m[3]!.split(',').map((hp) => {
    const at = hp.lastIndexOf(':');
    const port = at > 0 ? Number(hp.slice(at + 1)) : 26379;
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new SlipwayError('ERR_INVALID_OPTION', `invalid Sentinel address ${JSON.stringify(hp)}`);
    return { host: at > 0 ? hp.slice(0, at) : hp, port };
  });
  return {
    sentinels, name: decodeURIComponent(m[4]!), ...(m[1] ? { username: decodeURIComponent(m[1]) } : {}),
    ...(m[2] !== undefined ? { password: decodeURIComponent(m[2]) } : {}), ...(m[5] ? { db: Number(m[5]) } : {}),
  };
}
