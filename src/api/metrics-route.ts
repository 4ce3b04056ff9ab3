import { farmStatus } from '../farm/submit.js';
import { SlipwayError, isUserError } from '../errors.js';
import { ApiError } from './http-errors.js';
import type { ApiContext, ApiRequest } from './api-context.js';

import type { BuildOutcome } from '../farm/metrics.js';

export { tapBuild, type BuildOutcome, type BuildTap } from '../farm/metrics.js';

/** `failure` for the user's errors (a RUN that exits 1, a bad Dockerfile), `error` for the rest. */
export function outcomeOf(e: unknown): BuildOutcome {
  if (e instanceof ApiError) return e.status < 500 ? 'failure' : 'error';
  return e instanceof SlipwayError && isUserError(e.code) ? 'failure' : 'error';
}

/** The longest a scrape waits for the farm's queue before answering without fresh gauges. */
const FARM_TIMEOUT_MS = 2000;

/** Sets the queue depth and worker count from the farm's queue; a farm that does not answer leaves them as they were. */
async function refreshFarmGauges(ctx: ApiContext): Promise<void> {
  if (!ctx.farm) return;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => { timer = setTimeout(() => resolve(undefined), FARM_TIMEOUT_MS); });
  const status = await Promise.race([farmStatus(ctx.farm.redisUrl).catch(() => undefined), timeout]);
  clearTimeout(timer);
  if (!status) return;
  const c = status.counts;
  ctx.metrics.queueDepth.set((c['waiting'] ?? 0) + (c['delayed'] ?? 0) + (c['prioritized'] ?? 0));
  ctx.metrics.activeWorkers.set(status.workers.length);
}

/**
 * `GET /metrics`: Prometheus text. Builds and steps count this server's own `/build`s; with a
 * farm configured, the queue depth and the number of connected workers are read at each scrape.
 */
export async function metricsRoute({ res }: ApiRequest, ctx: ApiContext): Promise<void> {
  await refreshFarmGauges(ctx);
  const text = await ctx.metrics.registry.metrics();
  res.writeHead(200, { 'Content-Type': ctx.metrics.registry.contentType, 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}
