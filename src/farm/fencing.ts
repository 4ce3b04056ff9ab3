import type { Redis } from 'ioredis';

/**
 * Leases with fencing tokens, each step in one Lua script (Redis runs a script atomically). A
 * lease's value is `<owner>#<token>`, the token taken from a per-tenant counter (INCR), so every
 * lease ever granted on the farm has a larger token than the ones before it. Whatever a lease
 * guards is written only by a script that first checks that the lease still holds exactly this
 * value: a holder that was paused or cut off past its lease's expiry finds another value (or
 * none) and is refused, however late it wakes up.
 */

const ACQUIRE = `
if redis.call('exists', KEYS[1]) == 1 then return 0 end
local t = redis.call('incr', KEYS[2])
redis.call('set', KEYS[1], ARGV[1] .. '#' .. t, 'PX', ARGV[2])
return t`;

const RENEW = `
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0`;

const RELEASE = `
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0`;

// A record once written is never overwritten (a step's record is immutable); only the lease's
// current holder may write it.
const PUBLISH = `
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('exists', KEYS[2]) == 1 then return 2 end
redis.call('set', KEYS[2], ARGV[2])
return 1`;

// A tag's record moves only forward: a job's fencing token must be at least the one that moved
// it last, and the job must still hold its queue lock.
const MOVE_TAG = `
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
local cur = tonumber(redis.call('hget', KEYS[2], 'fence') or '0')
if cur > tonumber(ARGV[2]) then return 0 end
redis.call('hset', KEYS[2], 'fence', ARGV[2], 'image', ARGV[3], 'job', ARGV[4])
return 1`;

/** A held lease: its value (to renew, release and fence with) and its token. */
export interface FencedLease { value: string; fence: number }

/** Takes the lease when nobody holds it; undefined when someone does. */
export async function acquireFencedLease(redis: Redis, key: string, fenceKey: string, owner: string, ms: number): Promise<FencedLease | undefined> {
  const t = Number(await redis.eval(ACQUIRE, 2, key, fenceKey, owner, String(ms)));
  return t > 0 ? { value: `${owner}#${t}`, fence: t } : undefined;
}

/** Extends the lease if it is still ours. */
export async function renewLease(redis: Redis, key: string, value: string, ms: number): Promise<boolean> {
  return Number(await redis.eval(RENEW, 1, key, value, String(ms))) === 1;
}

/** Gives the lease up if it is still ours. */
export async function releaseLease(redis: Redis, key: string, value: string): Promise<void> {
  await redis.eval(RELEASE, 1, key, value);
}

/** Writes `record` at `recordKey` if the lease still holds `value`: 'fenced' when it does not. */
export async function publishFenced(redis: Redis, leaseKey: string, recordKey: string, value: string, record: string): Promise<'published' | 'exists' | 'fenced'> {
  const r = Number(await redis.eval(PUBLISH, 2, leaseKey, recordKey, value, record));
  return r === 1 ? 'published' : r === 2 ? 'exists' : 'fenced';
}

/** Takes a fencing token from the tenant's counter (a job takes one when it starts). */
export async function nextFence(redis: Redis, fenceKey: string): Promise<number> {
  return Number(await redis.incr(fenceKey));
}

/**
 * Moves a tag's record to `image` if the job still holds its queue lock (`lockKey` = `token`)
 * and no job with a larger fencing token moved it: false means this job must not push the tag.
 */
export async function moveTagFenced(redis: Redis, opts: { lockKey: string; token: string; tagKey: string; fence: number; image: string; job: string }): Promise<boolean> {
  return Number(await redis.eval(MOVE_TAG, 2, opts.lockKey, opts.tagKey, opts.token, String(opts.fence), opts.image, opts.job)) === 1;
}
