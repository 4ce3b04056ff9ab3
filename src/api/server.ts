import type { SandboxPolicy } from '../sandbox/limits.js';
import http, { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import net from 'node:net';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import type { StoreLayout } from '../store/layout.js';
import type { WorkerPool } from '../scheduler/pool.js';
import { ApiError, sendError, toApiError } from './http-errors.js';
import { DEFAULT_LIMITS, readSmallBody, type ApiLimits } from './body.js';
import { recordSocketPath } from './unix-sockets.js';
import { KeyedQueue } from './keyed-queue.js';
import { FarmMetrics } from '../farm/metrics.js';
import { matchRoute, type ApiContext, type FarmConfig } from './routes.js';
import { API_VERSION, MIN_API_VERSION, SERVER_VERSION } from './system-routes.js';
import { authenticate, checkTenantPath } from './authenticate.js';
import type { TenantTokens } from './tenant-tokens.js';
import { ContainerTable } from './container-table.js';
import { attachHijacked } from './container-routes.js';

/** Where the server listens: a unix socket (mode 0660) or a TCP port (token required). */
export type Endpoint = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

/** What `EngineServer.start` needs. */
export interface EngineServerOptions {
  layout: StoreLayout;
  pool: WorkerPool;
  endpoints: Endpoint[];
  /** The operator's token: TCP listeners demand `Authorization: Bearer <token>` (this or a tenant's) on every request. */
  token?: string;
  /** Tenants' tokens (`--tenants-file`): each maps to a tenant that may use the farm's endpoints. */
  tenants?: TenantTokens;
  limits?: Partial<ApiLimits>;
  /** Registries pushed to and pulled from over plain HTTP (loopback ones always are). */
  insecureRegistries?: readonly string[];
  /** The build farm behind `/slipway/v1/builds`; without it those endpoints answer 503. */
  farm?: FarmConfig;
  /** Where `GET /metrics` reads from (a fresh registry by default). */
  metrics?: FarmMetrics;
  /** Operational messages (listening, internal errors with their stack). */
  log?: (line: string) => void;
  /** The sandbox every build gets: defaults and ceilings, and what the operator allows. */
  policy?: SandboxPolicy;
}

/** Parses `-H` values: `unix:///path.sock` or `tcp://HOST:PORT` (`[::1]:PORT` for IPv6). */
export function parseEndpoint(spec: string): Endpoint {
  if (spec.startsWith('unix://')) {
    const p = spec.slice('unix://'.length);
    if (!p) throw new ApiError(400, `invalid -H ${spec}: no socket path`);
    return { kind: 'unix', path: path.resolve(p) };
  }
  const m = /^tcp:\/\/(\[[0-9a-fA-F:.]+\]|[^:/[\]]+):(\d{1,5})\/?$/.exec(spec);
  if (m && Number(m[2]) <= 65535) return { kind: 'tcp', host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
  throw new ApiError(400, `invalid -H ${spec}: use unix:///path.sock or tcp://HOST:PORT`);
}

/** Splits the request target and strips `/vX.Y`, which must lie within [MIN_API_VERSION, API_VERSION]. */
function parseTarget(raw: string | undefined): { path: string; query: URLSearchParams } {
  const target = raw ?? '';
  const q = target.indexOf('?');
  const pathname = q < 0 ? target : target.slice(0, q);
  if (!pathname.startsWith('/')) throw new ApiError(400, `invalid request path: ${JSON.stringify(target.slice(0, 200))}`);
  const query = new URLSearchParams(q < 0 ? '' : target.slice(q + 1));
  const m = /^\/v(\d+)\.(\d+)(\/.*)?$/.exec(pathname);
  if (!m) return { path: pathname, query };
  const v = `${Number(m[1])}.${Number(m[2])}`;
  const num = (s: string) => s.split('.').map(Number) as [number, number];
  const cmp = (a: string, b: string) => { const [x, y] = num(a); const [u, w] = num(b); return x - u || y - w; };
  if (cmp(v, MIN_API_VERSION) < 0) throw new ApiError(400, `client version ${v} is too old. Minimum supported API version is ${MIN_API_VERSION}, please upgrade your client to a newer version`);
  if (cmp(v, API_VERSION) > 0) throw new ApiError(400, `client version ${v} is too new. Maximum supported API version is ${API_VERSION}`);
  return { path: m[3] ?? '/', query };
}

/** A malformed HTTP request (bad syntax, oversized headers) still gets Docker's error shape. */
function onClientError(err: Error & { code?: string }, socket: Duplex, limits: ApiLimits): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
  const message = status === 431 ? `request headers exceed the server's limit of ${limits.maxHeaderBytes} bytes` : `malformed request: ${err.code ?? err.message}`;
  const body = `${JSON.stringify({ message })}\n`;
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}

/**
 * The Docker Engine API server: one store, one worker pool and one cache shared by every
 * request on every listener; plus Slipway's own `/metrics` and, with a farm, `/slipway/v1/builds`.
 * Unix sockets are created mode 0660 without a window in which they
 * are more open (bound in a private folder, then renamed into place).
 */
export class EngineServer {
  private readonly servers: Array<{ server: http.Server; socketPath?: string }> = [];
  private readonly builds = new Set<AbortController>();
  private readonly ctx: ApiContext;
  private readonly limits: ApiLimits;
  /** The listeners' addresses (`unix:///…`, `tcp://host:port` with the port actually bound). */
  readonly addresses: string[] = [];

  private constructor(private readonly opts: EngineServerOptions) {
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.ctx = {
      layout: opts.layout, pool: opts.pool, limits: this.limits, identicalBuilds: new KeyedQueue(),
      insecureRegistries: opts.insecureRegistries ?? [], farm: opts.farm, metrics: opts.metrics ?? new FarmMetrics(),
      policy: opts.policy ?? { sandbox: {}, entitlements: [] },
      containers: new ContainerTable(opts.layout),
      trackBuild: (abort) => {
        this.builds.add(abort);
        return () => this.builds.delete(abort);
      },
    };
  }

  /** Starts every listener; a TCP endpoint without a token is refused before anything listens. */
  static async start(opts: EngineServerOptions): Promise<EngineServer> {
    if (opts.endpoints.some((e) => e.kind === 'tcp') && !opts.token && !opts.tenants) {
      throw new ApiError(400, 'a TCP listener needs a token: --token-file FILE or SLIPWAY_TOKEN');
    }
    const s = new EngineServer(opts);
    try {
      for (const e of opts.endpoints) await s.listen(e);
    } catch (err) {
      await s.close();
      throw err;
    }
    return s;
  }

  private createHttpServer(tcp: boolean): http.Server {
    const server = http.createServer({ maxHeaderSize: this.limits.maxHeaderBytes, requestTimeout: 3_600_000, headersTimeout: 60_000 }, (req, res) => {
      void this.handle(req, res, tcp);
    });
    server.on('clientError', (err: Error & { code?: string }, socket) => onClientError(err, socket, this.limits));
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => void this.upgrade(req, socket, head, tcp));
    return server;
  }

  private async listen(e: Endpoint): Promise<void> {
    if (e.kind === 'tcp') {
      const server = this.createHttpServer(true);
      this.servers.push({ server });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(e.port, e.host, () => resolve());
      });
      const addr = server.address() as net.AddressInfo;
      const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
      this.addresses.push(`tcp://${host}:${addr.port}`);
      return;
    }
    const server = this.createHttpServer(false);
    await clearStaleSocket(e.path);
    this.servers.push({ server, socketPath: e.path });
    await listenUnix(server, e.path);
    this.addresses.push(`unix://${e.path}`);
  }

  private async handle(req: IncomingMessage, res: ServerResponse, tcp: boolean): Promise<void> {
    res.setHeader('Api-Version', API_VERSION);
    res.setHeader('Ostype', 'linux');
    res.setHeader('Docker-Experimental', 'false');
    res.setHeader('Server', `Slipway/${SERVER_VERSION} (linux)`);
    try {
      const principal = await authenticate(req, { tcp, token: this.opts.token, tenants: this.opts.tenants });
      const { path: p, query } = parseTarget(req.url);
      checkTenantPath(principal, p);
      const route = matchRoute(req.method ?? 'GET', p);
      if (!route.streamsBody) await readSmallBody(req, this.limits.maxSmallBodyBytes);
      await route.handler({ req, res, path: p, query, name: route.name, principal }, this.ctx);
    } catch (e) {
      const err = toApiError(e);
      // A client that went away mid-answer is no server fault.
      const clientGone = req.socket.destroyed && res.headersSent;
      if (err.status >= 500 && !(e instanceof ApiError) && !clientGone) this.opts.log?.(`${req.method} ${req.url}: ${(e as Error).stack ?? String(e)}`);
      // An unauthenticated client gets no second request on this connection.
      if (err.status === 401) res.setHeader('Connection', 'close');
      sendError(res, err);
    }
  }

  /**
   * A hijacked connection: only `POST /containers/{id}/attach` takes one. Errors get Docker's
   * JSON body on the raw socket, which then closes.
   */
  private async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, tcp: boolean): Promise<void> {
    socket.on('error', () => undefined);
    try {
      const principal = await authenticate(req, { tcp, token: this.opts.token, tenants: this.opts.tenants });
      const { path: p, query } = parseTarget(req.url);
      checkTenantPath(principal, p);
      const m = /^\/containers\/([^/]+)\/attach$/.exec(p);
      if (!m || req.method !== 'POST' || (req.headers.upgrade ?? '').toLowerCase() !== 'tcp') throw new ApiError(400, 'only POST /containers/{id}/attach takes Upgrade: tcp');
      let name: string;
      try {
        name = decodeURIComponent(m[1]!);
      } catch {
        throw new ApiError(400, 'invalid escape in path');
      }
      attachHijacked(this.ctx.containers.get(name), query, socket, head);
    } catch (e) {
      const err = toApiError(e);
      const body = `${JSON.stringify({ message: err.message })}\n`;
      socket.end(`HTTP/1.1 ${err.status} ${STATUS_CODES[err.status] ?? 'Error'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    }
  }

  /** Stops listening, cancels running builds, kills containers, waits for requests to end, removes the sockets. */
  async close(): Promise<void> {
    for (const b of this.builds) b.abort();
    await this.ctx.containers.closeAll();
    await Promise.all(this.servers.map(({ server }) => new Promise<void>((resolve) => {
      if (!server.listening) return resolve();
      const force = setTimeout(() => server.closeAllConnections(), 10_000);
      server.close(() => {
        clearTimeout(force);
        resolve();
      });
      server.closeIdleConnections();
    })));
    for (const { socketPath } of this.servers) if (socketPath) await fs.rm(socketPath, { force: true });
  }
}

/** An existing socket nobody answers on is left over from a crash; a live one or a non-socket is an error. */
async function clearStaleSocket(p: string): Promise<void> {
  const st = await fs.lstat(p).catch(() => undefined);
  if (!st) return;
  if (!st.isSocket()) throw new ApiError(400, `${p} exists and is not a socket`);
  const alive = await new Promise<boolean>((resolve) => {
    const c = net.connect(p);
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
  if (alive) throw new ApiError(400, `another server is listening on ${p}`);
  await fs.rm(p, { force: true });
}

/**
 * Binds in a fresh 0700 folder beside the target, sets 0660, then renames the socket into
 * place: a connection is possible only once the mode is right. Paths too long for that detour
 * (sun_path holds 107 bytes) bind directly and chmod at once.
 */
async function listenUnix(server: http.Server, target: string): Promise<void> {
  const bind = (p: string) => new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(p, () => {
      server.off('error', reject);
      resolve();
    });
  });
  if (Buffer.byteLength(target) > 107) throw new ApiError(400, `socket path too long (max 107 bytes): ${target}`);
  await fs.mkdir(path.dirname(target), { recursive: true });
  const dir = await fs.mkdtemp(path.join(path.dirname(target), '.sw'));
  try {
    const tmp = path.join(dir, 's');
    if (Buffer.byteLength(tmp) > 107) {
      await bind(target);
      await fs.chmod(target, 0o660);
      recordSocketPath(server, target);
      return;
    }
    await bind(tmp);
    await fs.chmod(tmp, 0o660);
    await fs.rename(tmp, target);
    recordSocketPath(server, target);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}
