/**
 * Test helper: an HTTP front for a test registry that speaks Docker's bearer-token flow (a 401
 * with `WWW-Authenticate: Bearer realm=…,service=…,scope=…`, tokens from `/token` for Basic
 * credentials, scopes checked per request) and can corrupt a blob on its way out.
 */
import http from 'node:http';
import crypto from 'node:crypto';
import type net from 'node:net';

/** A running proxy. */
export interface TokenProxy {
  host: string;
  /** Every `/token` request: the scopes asked for and whether credentials were accepted. */
  tokenRequests: Array<{ scopes: string[]; user: string | undefined; granted: boolean }>;
  /** `METHOD PATH` of every request forwarded to the registry. */
  forwarded: string[];
  /** Blob digests whose body is altered (last byte flipped) on the way to the client. */
  corrupt: Set<string>;
  stop(): Promise<void>;
}

type Grants = Map<string, Set<string>>; // repository (or "catalog") -> actions

function parseScopes(scopes: string[]): Grants {
  const g: Grants = new Map();
  for (const s of scopes) {
    const m = /^(repository|registry):([^:]+):(.+)$/.exec(s);
    if (!m) continue;
    const name = m[1] === 'registry' ? `registry:${m[2]}` : m[2]!;
    const set = g.get(name) ?? new Set<string>();
    for (const a of m[3]!.split(',')) set.add(a);
    g.set(name, set);
  }
  return g;
}

/** The scopes a request needs, from its path and method. */
function requiredScopes(method: string, url: URL): string[] {
  if (url.pathname === '/v2/' || url.pathname === '/v2') return [];
  if (url.pathname === '/v2/_catalog') return ['registry:catalog:*'];
  const m = /^\/v2\/(.+?)\/(blobs|manifests|tags)\//.exec(url.pathname);
  if (!m) return [];
  const action = method === 'GET' || method === 'HEAD' ? 'pull' : 'push';
  const out = [`repository:${m[1]}:${action === 'push' ? 'pull,push' : 'pull'}`];
  const from = url.searchParams.get('from');
  if (from) out.push(`repository:${from}:pull`);
  return out;
}

function covered(grants: Grants, needed: string[]): boolean {
  const need = parseScopes(needed);
  for (const [name, actions] of need) {
    const have = grants.get(name);
    for (const a of actions) if (!have || !(have.has(a) || have.has('*'))) return false;
  }
  return true;
}

/** Starts the proxy in front of `target` (`host:port`), accepting `user`/`password` at `/token`. */
export function startTokenProxy(target: string, creds: { user: string; password: string }): Promise<TokenProxy> {
  const tokens = new Map<string, Grants>();
  const tokenRequests: TokenProxy['tokenRequests'] = [];
  const forwarded: string[] = [];
  const corrupt = new Set<string>();
  const sockets = new Set<net.Socket>();
  let self = '';
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', `http://${self}`);
    if (url.pathname === '/token') {
      const scopes = url.searchParams.getAll('scope').flatMap((s) => s.split(' ')).filter(Boolean);
      const basic = /^Basic (.+)$/.exec(req.headers.authorization ?? '');
      const [user, ...rest] = basic ? Buffer.from(basic[1]!, 'base64').toString().split(':') : [];
      const granted = user === creds.user && rest.join(':') === creds.password;
      tokenRequests.push({ scopes, user, granted });
      if (!granted) {
        res.writeHead(401, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'incorrect username or password' }] }));
        return;
      }
      const token = crypto.randomBytes(16).toString('hex');
      tokens.set(token, parseScopes(scopes));
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ token, access_token: token, expires_in: 300 }));
      return;
    }
    const needed = requiredScopes(req.method ?? 'GET', url);
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    const grants = bearer ? tokens.get(bearer) : undefined;
    if (!grants || !covered(grants, needed)) {
      const scope = needed.length ? `,scope="${needed.join(' ')}"` : '';
      res.writeHead(401, { 'Content-Type': 'application/json', 'WWW-Authenticate': `Bearer realm="http://${self}/token",service="slipway-test"${scope}` });
      res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }));
      req.resume();
      return;
    }
    forwarded.push(`${req.method} ${url.pathname}`);
    const headers = { ...req.headers };
    delete headers.authorization;
    const up = http.request({ host: target.split(':')[0], port: Number(target.split(':')[1]), method: req.method, path: req.url, headers }, (upRes) => {
      const digest = /\/blobs\/(sha256:[0-9a-f]{64})$/.exec(url.pathname)?.[1];
      if (req.method === 'GET' && digest && corrupt.has(digest)) {
        const chunks: Buffer[] = [];
        upRes.on('data', (c: Buffer) => chunks.push(c));
        upRes.on('end', () => {
          const body = Buffer.concat(chunks);
          if (body.length) body[body.length - 1] = body[body.length - 1]! ^ 0xff;
          res.writeHead(upRes.statusCode ?? 500, upRes.headers);
          res.end(body);
        });
        return;
      }
      res.writeHead(upRes.statusCode ?? 500, upRes.headers);
      upRes.pipe(res);
    });
    up.on('error', (e) => {
      res.writeHead(502);
      res.end(String(e));
    });
    req.pipe(up);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      self = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
      resolve({
        host: self, tokenRequests, forwarded, corrupt,
        stop: () => new Promise<void>((r) => {
          for (const s of sockets) s.destroy();
          server.close(() => r());
        }),
      });
    });
  });
}
