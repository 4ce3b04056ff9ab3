import type { IncomingMessage, ServerResponse } from 'node:http';
import type { StoreLayout } from '../store/layout.js';
import type { WorkerPool } from '../scheduler/pool.js';
import type { ApiLimits } from './body.js';
import type { KeyedQueue } from './keyed-queue.js';
import type { FarmMetrics } from '../farm/metrics.js';
import type { SandboxPolicy } from '../sandbox/limits.js';
import type { ContainerTable } from './container-table.js';
import type { Principal } from './tenant-tokens.js';
import type { Credentials } from '../registry/client.js';

/** Where the build farm is: its queue's Redis and its registry (both needed, as for `slipway submit`). */
export interface FarmConfig {
  redisUrl: string;
  registry: string;
  /** This server's own credentials for the farm's registry (it uploads the contexts). */
  registryCredentials?: Credentials | undefined;
  /** Cache-affinity routing of submitted builds (default on), and the chosen worker's head start. */
  affinity?: boolean;
  affinityWaitMs?: number;
}

/** What every handler shares: one store, one worker pool, one set of limits per server. */
export interface ApiContext {
  layout: StoreLayout;
  pool: WorkerPool;
  limits: ApiLimits;
  /** Builds with the same context bytes and options run one after another (see KeyedQueue). */
  identicalBuilds: KeyedQueue;
  /** Registers a running build so that shutdown can cancel it; returns the unregister function. */
  trackBuild: (abort: AbortController) => () => void;
  /** Registries spoken to over plain HTTP besides loopback ones (`--insecure-registry`). */
  insecureRegistries: readonly string[];
  /** The farm the `/slipway/v1/builds` endpoints submit to; undefined answers them 503. */
  farm: FarmConfig | undefined;
  /** What `GET /metrics` shows; the build route counts its builds and steps here. */
  metrics: FarmMetrics;
  /** The sandbox of every build: the operator's defaults, ceilings and entitlements. */
  policy: SandboxPolicy;
  /** `docker run`'s containers (in memory: they do not outlive the server). */
  containers: ContainerTable;
}

/** One request, after the `/vX.Y` prefix is stripped and the route's `{name}` is decoded. */
export interface ApiRequest {
  req: IncomingMessage;
  res: ServerResponse;
  path: string;
  query: URLSearchParams;
  /** The path's `{name}` (image, container, ...), or '' for routes without one. */
  name: string;
  /** Who sent it: the farm's endpoints queue and read builds of this tenant only. */
  principal: Principal;
}

export type Handler = (r: ApiRequest, ctx: ApiContext) => Promise<void>;
