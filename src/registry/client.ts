import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { SlipwayError } from '../errors.js';
import { DEFAULT_INDEX, DEFAULT_INDEX_API } from './remote-reference.js';
import { MANIFEST_ACCEPT, MAX_MANIFEST_BYTES, type DescriptorJson } from './manifest.js';

/** What authenticates us to a registry: a user and password, or an identity (refresh) token. */
export type Credentials = { username: string; password: string } | { identityToken: string };

/** How to reach one registry. */
export interface ClientOptions {
  /** `host[:port]`, or `docker.io` for the default index. */
  registry: string;
  /** Registries (host or host:port) that may be reached over plain HTTP. */
  insecureRegistries?: readonly string[];
  credentials?: Credentials | undefined;
  /** Token scopes asked for up front, e.g. `repository:thoward/scooby_snacks:pull,push`. */
  scopes?: readonly string[];
}

/** An upload or download callback: bytes done so far and the total. */
export type ByteProgress = (current: number, total: number) => void;

const USER_AGENT = 'slipway/0.1 (+docker-compatible)';
const MAX_ERROR_BYTES = 64 * 1024;
const MAX_TOKEN_BYTES = 1024 * 1024;

/**
 * The URL base of a registry: plain HTTP for `localhost`, 127.0.0.0/8, `::1` and registries the
 * user marked insecure; HTTPS everywhere else. The default index is served by registry-1.docker.io.
 */
export function registryBaseUrl(registry: string, insecure: readonly string[] = []): string {
  const host = registry === DEFAULT_INDEX ? DEFAULT_INDEX_API : registry;
  const hostname = host.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
  const plain = hostname === 'localhost' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname) || hostname === '::1'
    || insecure.includes(registry) || insecure.includes(hostname);
  return `${plain ? 'http' : 'https'}://${host}`;
}

interface Challenge {
  scheme: 'basic' | 'bearer';
  params: Record<string, string>;
}

/** Parses `WWW-Authenticate: Bearer realm="…",service="…",scope="…"` (quoted values may hold commas). */
function parseChallenge(header: string | null): Challenge | undefined {
  if (!header) return undefined;
  const m = /^\s*(\w+)\s*(.*)$/s.exec(header);
  if (!m) return undefined;
  const scheme = m[1]!.toLowerCase();
  if (scheme !== 'basic' && scheme !== 'bearer') return undefined;
  const params: Record<string, string> = {};
  for (const p of m[2]!.matchAll(/(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g)) {
    params[p[1]!.toLowerCase()] = (p[2] ?? p[3] ?? '').replace(/\\(.)/g, '$1');
  }
  return { scheme, params };
}

/** Reads a response body into memory, refusing more than `cap` bytes (a registry is untrusted). */
export async function readCapped(res: Response, cap: number, what: string): Promise<Buffer> {
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (declared > cap) {
    await res.body?.cancel().catch(() => undefined);
    throw new SlipwayError('ERR_REGISTRY', `${what} is too large (${declared} bytes, at most ${cap})`);
  }
  if (!res.body) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of Readable.fromWeb(res.body as unknown as WebReadableStream<Uint8Array>)) {
    const b = chunk as Buffer;
    n += b.length;
    if (n > cap) throw new SlipwayError('ERR_REGISTRY', `${what} is too large (more than ${cap} bytes)`);
    chunks.push(b);
  }
  return Buffer.concat(chunks);
}

/**
 * A registry's error as a SlipwayError: `{"errors":[{code,message}]}` reads as Docker prints it
 * (`manifest unknown: manifest unknown`); 401 and 403 become ERR_UNAUTHORIZED.
 */
export async function registryError(res: Response, what: string): Promise<SlipwayError> {
  const text = (await readCapped(res, MAX_ERROR_BYTES, 'error body').catch(() => Buffer.alloc(0))).toString('utf8');
  let detail = '';
  try {
    const first = (JSON.parse(text) as { errors?: Array<{ code?: string; message?: string }> }).errors?.[0];
    if (first) detail = `${String(first.code ?? 'error').toLowerCase().replace(/_/g, ' ')}: ${first.message ?? ''}`;
  } catch {
    detail = '';
  }
  if (!detail) detail = res.status === 401 ? 'unauthorized: authentication required' : `${res.status} ${res.statusText}`.trim();
  const code = res.status === 401 || res.status === 403 ? 'ERR_UNAUTHORIZED' : res.status === 404 ? 'ERR_IMAGE_NOT_FOUND' : 'ERR_REGISTRY';
  return new SlipwayError(code, `${what}: ${detail}`);
}

/** `Location` with `digest=` added, the rest kept byte for byte (its `_state` must come back exactly). */
function withDigest(location: string, digest: string): string {
  return `${location}${location.includes('?') ? '&' : '?'}digest=${encodeURIComponent(digest)}`;
}

/**
 * A client for one registry (OCI Distribution API v2). It authenticates lazily: a 401 carries a
 * challenge, answered with Basic credentials or a bearer token from the challenge's realm (Docker's
 * token flow), and the request is sent again. Credentials only ever go to the registry's own
 * origin and its token realm. Every body sent is a Buffer, so any request can be repeated.
 */
export class RegistryClient {
  readonly base: string;
  private readonly origin: string;
  private authorization: string | undefined;
  private readonly scopes: Set<string>;
  private readonly credentials: Credentials | undefined;

  constructor(readonly opts: ClientOptions) {
    this.base = registryBaseUrl(opts.registry, opts.insecureRegistries);
    this.origin = new URL(this.base).origin;
    this.scopes = new Set(opts.scopes ?? []);
    this.credentials = opts.credentials;
  }

  /** Asks for one more token scope from now on (a cross-repository mount needs the source's pull). */
  addScope(scope: string): void {
    if (this.scopes.has(scope)) return;
    this.scopes.add(scope);
    // A bearer token names its scopes: drop it so the next 401 fetches one that covers the new scope.
    if (this.authorization?.startsWith('Bearer ')) this.authorization = undefined;
  }

  /** Absolute URL for a path under the registry (or an absolute URL the registry handed us). */
  url(pathOrUrl: string): string {
    return new URL(pathOrUrl, this.base).toString();
  }

  private async send(method: string, url: string, headers: Record<string, string>, body: Buffer | undefined): Promise<Response> {
    // identity: a blob must arrive as stored, or its digest cannot be checked.
    const h: Record<string, string> = { 'User-Agent': USER_AGENT, 'Accept-Encoding': 'identity', ...headers };
    if (this.authorization && new URL(url).origin === this.origin) h['Authorization'] = this.authorization;
    // fetch sets Content-Length itself for a Buffer body (and 0 for a body-less POST/PUT).
    try {
      return await fetch(url, { method, headers: h, ...(body !== undefined ? { body: body as unknown as BodyInit } : {}), redirect: 'follow' });
    } catch (e) {
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      const why = cause?.message ?? (e as Error).message;
      const hint = url.startsWith('https:') && /wrong version number|EPROTO|ssl/i.test(why)
        ? ` (if ${this.opts.registry} serves plain HTTP, pass --insecure-registry ${this.opts.registry})` : '';
      throw new SlipwayError('ERR_REGISTRY', `${method} ${url}: ${why}${hint}`);
    }
  }

  /**
   * Sends a request; on 401 authenticates as the challenge asks and sends it again (at most
   * twice). A 401 that credentials cannot answer is returned to the caller unread.
   */
  async request(method: string, pathOrUrl: string, init: { headers?: Record<string, string>; body?: Buffer } = {}): Promise<Response> {
    const url = this.url(pathOrUrl);
    for (let attempt = 0; ; attempt++) {
      const sent = this.authorization;
      const res = await this.send(method, url, init.headers ?? {}, init.body);
      if (res.status !== 401 || attempt >= 3 || new URL(url).origin !== this.origin) return res;
      const challenge = parseChallenge(res.headers.get('www-authenticate'));
      if (!challenge) return res;
      // Concurrent requests meet the same challenge: when another one has answered it in the
      // meantime, try its answer before concluding that the credentials were refused.
      const renewed = this.authorization !== undefined && this.authorization !== sent;
      if (!renewed && !(await this.authenticate(challenge, sent))) return res;
      await res.body?.cancel().catch(() => undefined);
    }
  }

  /** Answers a challenge to a request sent with `sent`; false when there is nothing new to try. */
  private async authenticate(c: Challenge, sent: string | undefined): Promise<boolean> {
    if (c.scheme === 'basic') {
      const creds = this.credentials;
      if (!creds || !('username' in creds)) return false;
      const basic = `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
      if (sent === basic) return false;
      this.authorization = basic;
      return true;
    }
    const realm = c.params['realm'];
    if (!realm || !/^https?:\/\//.test(realm)) return false;
    for (const s of (c.params['scope'] ?? '').split(' ')) if (s) this.scopes.add(s);
    const bearer = `Bearer ${await this.fetchToken(realm, c.params['service'])}`;
    if (sent === bearer) return false;
    this.authorization = bearer;
    return true;
  }

  /** Docker's token flow: GET realm?service&scope with Basic credentials (POST with a refresh token). */
  private async fetchToken(realm: string, service: string | undefined): Promise<string> {
    const url = new URL(realm);
    const creds = this.credentials;
    let res: Response;
    const headers: Record<string, string> = { 'User-Agent': USER_AGENT };
    try {
      if (creds && 'identityToken' in creds) {
        const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: creds.identityToken, client_id: 'slipway' });
        if (service) form.set('service', service);
        if (this.scopes.size) form.set('scope', [...this.scopes].join(' '));
        res = await fetch(url, { method: 'POST', headers: { ...headers, 'Content-Type': 'application/x-www-form-urlencoded' }, body: form.toString() });
      } else {
        if (service) url.searchParams.set('service', service);
        for (const s of this.scopes) url.searchParams.append('scope', s);
        if (creds) headers['Authorization'] = `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
        res = await fetch(url, { headers });
      }
    } catch (e) {
      throw new SlipwayError('ERR_REGISTRY', `token request to ${url.origin}: ${(e as { cause?: Error }).cause?.message ?? (e as Error).message}`);
    }
    if (!res.ok) throw await registryError(res, `${this.opts.registry}: token request failed`);
    const body = JSON.parse((await readCapped(res, MAX_TOKEN_BYTES, 'token response')).toString('utf8')) as { token?: string; access_token?: string };
    const token = body.token ?? body.access_token;
    if (typeof token !== 'string' || token === '' || /[\r\n]/.test(token)) throw new SlipwayError('ERR_REGISTRY', `${this.opts.registry}: token response without a token`);
    return token;
  }

  /** `GET /v2/`: succeeds when the registry answers and accepts our credentials (login). */
  async ping(): Promise<void> {
    const res = await this.request('GET', '/v2/');
    if (res.status === 401 && !this.credentials) throw new SlipwayError('ERR_UNAUTHORIZED', `${this.opts.registry}: unauthorized: authentication required`);
    if (!res.ok) throw await registryError(res, `login to ${this.opts.registry} failed`);
    await res.body?.cancel().catch(() => undefined);
  }

  /** HEAD a blob: its size when the repository has it, undefined on 404. */
  async headBlob(repo: string, digest: string): Promise<number | undefined> {
    const res = await this.request('HEAD', `/v2/${repo}/blobs/${digest}`);
    if (res.status === 404) return undefined;
    if (!res.ok) throw await registryError(res, `HEAD ${repo}@${digest}`);
    const n = Number(res.headers.get('content-length'));
    return Number.isSafeInteger(n) ? n : 0;
  }

  /**
   * Tries a cross-repository mount. `mounted` on 201; otherwise the upload session the registry
   * opened instead (202), which the caller uploads into, or nothing when the mount was refused.
   */
  async mountBlob(repo: string, digest: string, from: string): Promise<{ mounted: true } | { mounted: false; location?: string }> {
    this.addScope(`repository:${from}:pull`);
    const res = await this.request('POST', `/v2/${repo}/blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(from)}`);
    await res.body?.cancel().catch(() => undefined);
    if (res.status === 201) return { mounted: true };
    const location = res.headers.get('location');
    if (res.status === 202 && location) return { mounted: false, location: this.url(location) };
    return { mounted: false };
  }

  /** Opens an upload session: the absolute `Location` to send the blob to. */
  async startUpload(repo: string): Promise<string> {
    const res = await this.request('POST', `/v2/${repo}/blobs/uploads/`);
    if (res.status !== 202) throw await registryError(res, `upload to ${repo} refused`);
    await res.body?.cancel().catch(() => undefined);
    const location = res.headers.get('location');
    if (!location) throw new SlipwayError('ERR_REGISTRY', `upload to ${repo}: no Location in the registry's answer`);
    return this.url(location);
  }

  /**
   * Uploads a blob from a file: one PUT when it fits in `chunkSize`, else PATCH chunks (each to
   * the latest `Location`) then a closing PUT. `location` reuses a session opened by a mount.
   */
  async uploadBlob(repo: string, blob: { file: string; size: number; digest: string }, opts: { chunkSize: number; location?: string | undefined; onProgress?: ByteProgress }): Promise<void> {
    let location = opts.location ?? (await this.startUpload(repo));
    const fh = await open(blob.file, 'r');
    try {
      const read = async (start: number, length: number): Promise<Buffer> => {
        const buf = Buffer.alloc(length);
        const { bytesRead } = await fh.read(buf, 0, length, start);
        if (bytesRead !== length) throw new SlipwayError('ERR_INTERNAL', `${blob.file}: short read`);
        return buf;
      };
      let finalBody: Buffer | undefined;
      if (blob.size <= opts.chunkSize) {
        finalBody = await read(0, blob.size);
      } else {
        for (let start = 0; start < blob.size; start += opts.chunkSize) {
          const chunk = await read(start, Math.min(opts.chunkSize, blob.size - start));
          const res = await this.request('PATCH', location, {
            headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': `${start}-${start + chunk.length - 1}` }, body: chunk,
          });
          if (res.status !== 202) throw await registryError(res, `upload of ${blob.digest} to ${repo} failed`);
          await res.body?.cancel().catch(() => undefined);
          const next = res.headers.get('location');
          if (!next) throw new SlipwayError('ERR_REGISTRY', `upload to ${repo}: no Location after PATCH`);
          location = this.url(next);
          opts.onProgress?.(start + chunk.length, blob.size);
        }
      }
      const res = await this.request('PUT', withDigest(location, blob.digest), {
        headers: { 'Content-Type': 'application/octet-stream' }, ...(finalBody ? { body: finalBody } : {}),
      });
      if (res.status !== 201) throw await registryError(res, `upload of ${blob.digest} to ${repo} failed`);
      await res.body?.cancel().catch(() => undefined);
      const echoed = res.headers.get('docker-content-digest');
      if (echoed && echoed !== blob.digest) throw new SlipwayError('ERR_REGISTRY', `upload of ${blob.digest} to ${repo}: the registry stored ${echoed}`);
      opts.onProgress?.(blob.size, blob.size);
    } finally {
      await fh.close();
    }
  }

  /** PUT a manifest under a tag or digest; returns the registry's digest for it. */
  async putManifest(repo: string, reference: string, mediaType: string, bytes: Buffer): Promise<string | undefined> {
    const res = await this.request('PUT', `/v2/${repo}/manifests/${reference}`, { headers: { 'Content-Type': mediaType }, body: bytes });
    if (res.status !== 201 && res.status !== 200) throw await registryError(res, `manifest upload to ${repo}:${reference} failed`);
    await res.body?.cancel().catch(() => undefined);
    return res.headers.get('docker-content-digest') ?? undefined;
  }

  /** GET a manifest (size-capped); the caller verifies its digest. */
  async getManifest(repo: string, reference: string): Promise<{ bytes: Buffer; contentType: string | null; digest: string | null }> {
    const res = await this.request('GET', `/v2/${repo}/manifests/${reference}`, { headers: { Accept: MANIFEST_ACCEPT } });
    if (!res.ok) {
      const where = `${this.opts.registry}/${repo}${reference.startsWith('sha256:') ? '@' : ':'}${reference}`;
      throw await registryError(res, res.status === 404 ? `manifest for ${where} not found` : where);
    }
    const bytes = await readCapped(res, MAX_MANIFEST_BYTES, `manifest ${repo}:${reference}`);
    return { bytes, contentType: res.headers.get('content-type'), digest: res.headers.get('docker-content-digest') };
  }

  /** GET a small blob (a config) into memory, verified against its descriptor. */
  async getBlobBytes(repo: string, desc: DescriptorJson, cap: number): Promise<Buffer> {
    if (desc.size > cap) throw new SlipwayError('ERR_REGISTRY', `blob ${desc.digest} is too large (${desc.size} bytes, at most ${cap})`);
    const res = await this.request('GET', `/v2/${repo}/blobs/${desc.digest}`);
    if (!res.ok) throw await registryError(res, `blob ${desc.digest} of ${repo}`);
    const bytes = await readCapped(res, desc.size, `blob ${desc.digest}`);
    verifyDigest(bytes.length, createHash('sha256').update(bytes).digest('hex'), desc);
    return bytes;
  }

  /**
   * Downloads a blob to `file` (created exclusively, 0600), hashing as it streams; refuses more
   * bytes than the descriptor's size, and fails unless size and sha256 match the descriptor.
   */
  async downloadBlob(repo: string, desc: DescriptorJson, file: string, onProgress?: ByteProgress): Promise<void> {
    const res = await this.request('GET', `/v2/${repo}/blobs/${desc.digest}`);
    if (!res.ok) throw await registryError(res, `blob ${desc.digest} of ${repo}`);
    if (!res.body) throw new SlipwayError('ERR_REGISTRY', `blob ${desc.digest}: empty response`);
    const hash = createHash('sha256');
    let n = 0;
    let last = 0;
    await pipeline(
      Readable.fromWeb(res.body as unknown as WebReadableStream<Uint8Array>),
      async function* (src: AsyncIterable<Buffer>) {
        for await (const chunk of src) {
          n += chunk.length;
          if (n > desc.size) throw new SlipwayError('ERR_REGISTRY', `blob ${desc.digest}: more than the ${desc.size} bytes its descriptor announces`);
          hash.update(chunk);
          if (onProgress && (n - last >= 512 * 1024 || n === desc.size)) {
            last = n;
            onProgress(n, desc.size);
          }
          yield chunk;
        }
      },
      createWriteStream(file, { flags: 'wx', mode: 0o600 }),
    );
    verifyDigest(n, hash.digest('hex'), desc);
  }

  /** Every repository name of the catalog (`/v2/_catalog`, following `Link` pages, capped). */
  async catalog(maxPages = 50): Promise<string[]> {
    const names: string[] = [];
    let next: string | undefined = '/v2/_catalog?n=1000';
    for (let page = 0; next && page < maxPages; page++) {
      const res: Response = await this.request('GET', next);
      if (!res.ok) throw await registryError(res, `${this.opts.registry}: catalog`);
      const body = JSON.parse((await readCapped(res, MAX_MANIFEST_BYTES, 'catalog')).toString('utf8')) as { repositories?: unknown };
      if (Array.isArray(body.repositories)) for (const r of body.repositories) if (typeof r === 'string') names.push(r);
      const link = /<([^>]+)>\s*;\s*rel="?next"?/.exec(res.headers.get('link') ?? '');
      next = link?.[1] && new URL(link[1], this.base).origin === this.origin ? link[1] : undefined;
    }
    return names;
  }
}

function verifyDigest(size: number, hex: string, desc: DescriptorJson): void {
  if (size !== desc.size) throw new SlipwayError('ERR_REGISTRY', `blob ${desc.digest}: got ${size} bytes, the descriptor says ${desc.size}`);
  if (`sha256:${hex}` !== desc.digest) throw new SlipwayError('ERR_REGISTRY', `blob ${desc.digest}: digest mismatch (the content hashes to sha256:${hex})`);
}
