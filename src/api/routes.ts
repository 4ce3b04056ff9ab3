import { ApiError } from './http-errors.js';
import { info, ping, version } from './system-routes.js';
import { buildRoute } from './build-route.js';
import {
  deleteImageRoute, historyRoute, inspectImageRoute, listImagesRoute, loadRoute, missingObject, saveRoute, tagRoute,
} from './image-routes.js';
import { authRoute, pullRoute, pushRoute } from './registry-routes.js';
import { farmBuildEventsRoute, farmBuildRoute, farmSecretKeysRoute, submitFarmBuildRoute } from './farm-routes.js';
import { metricsRoute } from './metrics-route.js';
import { localBuildRoute } from './local-build-route.js';
import type { Handler } from './api-context.js';
import {
  createContainerRoute, killContainerRoute, logsContainerRoute, removeContainerRoute, resizeContainerRoute, startContainerRoute,
  stopContainerRoute, waitContainerRoute,
} from './container-routes.js';
import { inspectContainerRoute, listContainersRoute } from './container-info.js';
import { pruneImagesRoute, systemDfRoute } from './system-df.js';

export type { ApiContext, ApiRequest, FarmConfig, Handler } from './api-context.js';

/**
 * One endpoint: methods, a path pattern whose first group (if any) is `{name}`, a handler, and
 * whether the handler streams the request body itself (the others get it read and size-checked).
 */
interface Route {
  methods: readonly string[];
  pattern: RegExp;
  handler: Handler;
  streamsBody?: true;
}

const notImplemented = (what: string): Handler => async () => {
  throw new ApiError(501, `${what} is not implemented by slipway`);
};

/**
 * The Engine API subset, in match order. Image names contain `/` and `:` unencoded, so `{name}`
 * is matched greedily (`(.+)`) up to the fixed suffix, as moby's `{name:.*}` routes do; fixed
 * paths such as `/images/json` come first.
 */
const ROUTES: readonly Route[] = [
  { methods: ['GET', 'HEAD'], pattern: /^\/_ping$/, handler: ping },
  { methods: ['GET'], pattern: /^\/version$/, handler: version },
  { methods: ['GET'], pattern: /^\/info$/, handler: info },
  { methods: ['POST'], pattern: /^\/auth$/, handler: authRoute, streamsBody: true },
  { methods: ['POST'], pattern: /^\/build$/, handler: buildRoute, streamsBody: true },
  { methods: ['GET'], pattern: /^\/images\/json$/, handler: listImagesRoute },
  { methods: ['POST'], pattern: /^\/images\/prune$/, handler: pruneImagesRoute },
  { methods: ['GET'], pattern: /^\/system\/df$/, handler: systemDfRoute },
  { methods: ['GET'], pattern: /^\/images\/get$/, handler: saveRoute },
  { methods: ['POST'], pattern: /^\/images\/load$/, handler: loadRoute, streamsBody: true },
  { methods: ['POST'], pattern: /^\/images\/create$/, handler: pullRoute },
  { methods: ['GET'], pattern: /^\/images\/search$/, handler: notImplemented('searching a registry') },
  { methods: ['GET'], pattern: /^\/images\/(.+)\/json$/, handler: inspectImageRoute },
  { methods: ['GET'], pattern: /^\/images\/(.+)\/history$/, handler: historyRoute },
  { methods: ['GET'], pattern: /^\/images\/(.+)\/get$/, handler: saveRoute },
  { methods: ['POST'], pattern: /^\/images\/(.+)\/tag$/, handler: tagRoute },
  { methods: ['POST'], pattern: /^\/images\/(.+)\/push$/, handler: pushRoute },
  { methods: ['DELETE'], pattern: /^\/images\/(.+)$/, handler: deleteImageRoute },
  // `docker run`: containers under the sandbox of `slipway run` (attach is hijacked: server.ts).
  { methods: ['GET'], pattern: /^\/containers\/json$/, handler: listContainersRoute },
  { methods: ['POST'], pattern: /^\/containers\/create$/, handler: createContainerRoute, streamsBody: true },
  { methods: ['GET'], pattern: /^\/containers\/([^/]+)\/json$/, handler: inspectContainerRoute },
  { methods: ['POST'], pattern: /^\/containers\/([^/]+)\/start$/, handler: startContainerRoute },
  { methods: ['POST'], pattern: /^\/containers\/([^/]+)\/wait$/, handler: waitContainerRoute },
  { methods: ['POST'], pattern: /^\/containers\/([^/]+)\/resize$/, handler: resizeContainerRoute },
  { methods: ['POST'], pattern: /^\/containers\/([^/]+)\/kill$/, handler: killContainerRoute },
  { methods: ['POST'], pattern: /^\/containers\/([^/]+)\/stop$/, handler: stopContainerRoute },
  { methods: ['GET'], pattern: /^\/containers\/([^/]+)\/logs$/, handler: logsContainerRoute },
  { methods: ['POST'], pattern: /^\/containers\/([^/]+)\/attach$/, handler: async () => { throw new ApiError(400, 'attach needs a hijacked connection (Connection: Upgrade, Upgrade: tcp)'); } },
  { methods: ['DELETE'], pattern: /^\/containers\/([^/]+)$/, handler: removeContainerRoute },
  { methods: ['GET'], pattern: /^\/networks\/(.+)$/, handler: missingObject.network },
  { methods: ['GET'], pattern: /^\/volumes\/(.+)$/, handler: missingObject.volume },
  { methods: ['GET'], pattern: /^\/plugins\/(.+)\/json$/, handler: missingObject.plugin },
  // Slipway's own: Prometheus metrics and the build farm.
  { methods: ['GET'], pattern: /^\/metrics$/, handler: metricsRoute },
  { methods: ['POST'], pattern: /^\/slipway\/v1\/local-builds$/, handler: localBuildRoute, streamsBody: true },
  { methods: ['POST'], pattern: /^\/slipway\/v1\/builds$/, handler: submitFarmBuildRoute, streamsBody: true },
  { methods: ['GET'], pattern: /^\/slipway\/v1\/secret-keys$/, handler: farmSecretKeysRoute },
  { methods: ['GET'], pattern: /^\/slipway\/v1\/builds\/([^/]+)$/, handler: farmBuildRoute },
  { methods: ['GET'], pattern: /^\/slipway\/v1\/builds\/([^/]+)\/events$/, handler: farmBuildEventsRoute },
];

/**
 * Finds the handler for `method path`. A path no route knows is moby's 404 `page not found`;
 * a known path with another method is a 405.
 */
export function matchRoute(method: string, path: string): { handler: Handler; name: string; streamsBody: boolean } {
  let pathKnown = false;
  for (const r of ROUTES) {
    const m = r.pattern.exec(path);
    if (!m) continue;
    pathKnown = true;
    if (!r.methods.includes(method)) continue;
    let name = '';
    if (m[1] !== undefined) {
      try {
        name = decodeURIComponent(m[1]);
      } catch {
        throw new ApiError(400, `invalid escape in path: ${path}`);
      }
    }
    return { handler: r.handler, name, streamsBody: r.streamsBody === true };
  }
  if (pathKnown) throw new ApiError(405, `method ${method} is not allowed on ${path}`);
  if (path.startsWith('/containers/') || path.startsWith('/exec/')) throw new ApiError(404, `slipway does not implement ${path.startsWith('/exec/') ? 'exec' : 'this container endpoint'}`);
  throw new ApiError(404, 'page not found');
}
