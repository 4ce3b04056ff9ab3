/**
 * Docker's first contact with a registry (`registry.PingV2Registry`): `GET /v2/`, where any
 * HTTP answer (200, 401 with a challenge, even 404) means the registry can be reached. When it
 * cannot, the error reads as Go's HTTP client writes it, which is what `docker pull` and a
 * legacy `docker build` print:
 * `Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused`.
 * Plain `node:http` rather than `fetch`: fetch refuses some ports outright ("bad port") and
 * hides the system error behind its own.
 */
import http from 'node:http';
import https from 'node:https';
import { SlipwayError } from '../errors.js';

/** Go's net.Dialer default in Docker's registry transport. */
const DIAL_TIMEOUT_MS = 30_000;

interface SystemError extends Error { code?: string; address?: string; port?: number; hostname?: string; syscall?: string }

function hostPort(address: string, port: number | string): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** How Go's net and crypto/tls packages describe a failed connection. */
export function goDialError(e: SystemError, url: URL): string {
  const port = url.port || (url.protocol === 'https:' ? '443' : '80');
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const at = hostPort(e.address ?? host, e.port ?? port);
  switch (e.code) {
    case 'ECONNREFUSED': return `dial tcp ${at}: connect: connection refused`;
    case 'EHOSTUNREACH': return `dial tcp ${at}: connect: no route to host`;
    case 'ENETUNREACH': return `dial tcp ${at}: connect: network is unreachable`;
    case 'ETIMEDOUT': return `dial tcp ${at}: i/o timeout`;
    case 'ECONNRESET': return `read tcp ${at}: read: connection reset by peer`;
    case 'ENOTFOUND': return `dial tcp: lookup ${host}: no such host`;
    case 'EAI_AGAIN': return `dial tcp: lookup ${host}: Temporary failure in name resolution`;
    case 'EPROTO':
    case 'ERR_SSL_WRONG_VERSION_NUMBER': return 'http: server gave HTTP response to HTTPS client';
    default: return e.message;
  }
}

/**
 * Resolves when `base` (`http[s]://host[:port]`) answers `GET /v2/` with any HTTP status;
 * rejects with ERR_REGISTRY and Docker's wording when it cannot be reached.
 */
export function pingRegistry(base: string, timeoutMs = DIAL_TIMEOUT_MS): Promise<void> {
  const url = new URL('/v2/', base);
  const get = url.protocol === 'https:' ? https.get : http.get;
  const fail = (e: SystemError): SlipwayError => new SlipwayError('ERR_REGISTRY', `Get "${url.href}": ${goDialError(e, url)}`);
  return new Promise((resolve, reject) => {
    const req = get(url, { agent: false, headers: { 'User-Agent': 'slipway/0.1 (+docker-compatible)' } }, (res) => {
      res.resume();
      resolve();
    });
    req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
    req.on('error', (e: SystemError) => reject(fail(e)));
  });
}
