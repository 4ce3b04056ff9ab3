import crypto from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { ApiError } from './http-errors.js';
import type { Principal, TenantTokens } from './tenant-tokens.js';

/** The operator: the single `--token-file` token, and anyone on the unix socket (mode 0660). */
export const OPERATOR: Principal = { tenant: 'default', operator: true };

const UNAUTHORIZED = 'Unauthorized: this endpoint needs "Authorization: Bearer <token>" (docker: "HttpHeaders" in config.json)';

const sha = (s: string) => crypto.createHash('sha256').update(s).digest();

/**
 * Who sent `req`. A bearer token is checked against the operator's token (constant time) and
 * the tenants file; a token that matches neither is a 401 on every listener. Without a token a
 * unix-socket client is the operator (the socket's mode is the access control) and a TCP client
 * gets a 401.
 */
export async function authenticate(req: IncomingMessage, opts: { tcp: boolean; token: string | undefined; tenants: TenantTokens | undefined }): Promise<Principal> {
  const header = req.headers.authorization;
  if (header === undefined) {
    if (opts.tcp) throw new ApiError(401, UNAUTHORIZED);
    return OPERATOR;
  }
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) throw new ApiError(401, UNAUTHORIZED);
  const given = m[1]!;
  if (opts.token !== undefined && crypto.timingSafeEqual(sha(given), sha(opts.token))) return OPERATOR;
  const p = await opts.tenants?.lookup(given);
  if (!p) throw new ApiError(401, UNAUTHORIZED);
  return p;
}

/** Paths a tenant that is not the operator may use: the farm's, and the harmless system ones. */
const TENANT_PATHS = /^\/(?:_ping|version|slipway\/v1\/secret-keys|slipway\/v1\/builds(?:\/[^/]+(?:\/events)?)?)$/;

/**
 * The Engine API's image and build endpoints work on the server's one store, which has no
 * tenants: only the operator may use them. Other tenants build through the farm.
 */
export function checkTenantPath(p: Principal, path: string): void {
  if (p.operator || TENANT_PATHS.test(path)) return;
  throw new ApiError(403, `tenant ${p.tenant} may use only the farm's endpoints (/slipway/v1/builds): ${path} works on the server's own store, which only the operator may use`);
}
