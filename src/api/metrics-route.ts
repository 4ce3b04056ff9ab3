import type { FarmMetrics } from '../farm/metrics.js';
import { farmStatus } from '../farm/submit.js';
import { SlipwayError, type ErrorCode } from '../errors.js';
import type { BuildEvent } from '../scheduler/progress.js';
import { ApiError } from './http-errors.js';
import type { ApiContext, ApiRequest } from './routes.js';

/** How a build of this server ended, as `slipway_builds_total{result}` counts it. */
export type BuildOutcome = 'success' | 'failure' | 'error' | 'cancelled';

/** Faults of the machine rather than of the Dockerfile (the farm worker's `error`). */
const INFRASTRUCTURE: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['ERR_INTERNAL', 'ERR_SANDBOX', 'ERR_REGISTRY', 'ERR_CANCELLED']);

/** `failure` for the user's errors (a RUN that exits 1, a bad Dockerfile), `error` for the rest. */
export function outcomeOf(e: unknown): BuildOutcome {
  if (e instanceof ApiError) return e.status < 500 ? 'failure' : 'error';
  return e instanceof SlipwayError && !INFRASTRUCTURE.has(e.code) ? 'failure' : 'error';
}

/** Counts one build of the server in the metrics; events go in as the build emits them. */
export interface BuildTap {
  event(e: BuildEvent): void;
  done(outcome: BuildOutcome): void;
}

/** Starts counting a build: steps by hit and miss (and how long a missed step ran), the build's result and duration. */
export function tapBuild(m: FarmMetrics): BuildTap {
  const started = Date.now();
  let missedAt: number | undefined;
  let finished = false;
  m.running.inc();
  return {
    event(e) {
      if (e.type === 'cache-hit') m.steps.inc({ outcome: 'hit', source: e.source ?? 'local' });
      if (e.type === 'cache-miss') {
        m.steps.inc({ outcome: 'miss', source: 'local' });
        missedAt = Date.now();
      }
      if (e.type === 'image' && missedAt !== undefined) {
        m.stepSeconds.observe((Date.now() - missedAt) / 1000);
        missedAt = undefined;
      }
      if (e.type === 'summary') m.cacheSavedSeconds.inc(e.savedMs / 1000);
    },
    done(outcome) {
      if (finished) return;
      finished = true;
      m.running.dec();
      m.builds.inc({ result: outcome });
      if (outcome !== 'cancelled') m.buildSeconds.observe((Date.now() - started) / 1000);
    },
  };
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
