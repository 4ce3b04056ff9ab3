import type { IncomingMessage, ServerResponse } from 'node:http';
import type { StoreLayout } from '../store/layout.js';
import type { SandboxPolicy } from '../sandbox/limits.js';
import type { ApiLimits } from './body.js';
import type { ContainerTable } from './container-table.js';

/**
 * What the container, `system df` and `image prune` handlers use of the server's context (a
 * part of routes.ts's ApiContext, spelled here so that these modules need not import routes.ts,
 * which imports them).
 */
export interface ContainerApiContext {
  layout: StoreLayout;
  limits: ApiLimits;
  policy: SandboxPolicy;
  containers: ContainerTable;
}

/** One request, as routes.ts hands it to a handler. */
export interface ContainerApiRequest {
  req: IncomingMessage;
  res: ServerResponse;
  query: URLSearchParams;
  name: string;
}
