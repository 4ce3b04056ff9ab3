import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import { createReadStream } from 'node:fs';
import { SlipwayError } from '../errors.js';
import { packContext } from '../context/pack.js';
import type { BuildJobResult } from '../farm/job.js';
import { sealSecretsFor, type WorkerKeyJson } from '../farm/secret-box.js';

/** Where a remote `submit` sends its build: the farm API of a `slipway serve`, with a tenant's token. */
export interface FarmServer {
  /** `tcp://HOST:PORT`, `http://HOST:PORT` or `unix:///path.sock`. */
  url: string;
  token: string | undefined;
}

/** `--token-file FILE` > `$SLIPWAY_TOKEN`. */
export async function readSubmitToken(file: string | undefined): Promise<string | undefined> {
  if (file === undefined) return process.env['SLIPWAY_TOKEN'] || undefined;
  const text = await fs.readFile(file, 'utf8').catch((e: NodeJS.ErrnoException) => {
    throw new SlipwayError('ERR_USAGE', `cannot read --token-file ${file}: ${e.code ?? e.message}`);
  });
  return text.trim() || undefined;
}

function target(server: FarmServer, p: string, extra: Record<string, string> = {}): http.RequestOptions {
  const headers: Record<string, string> = { ...extra, ...(server.token ? { authorization: `Bearer ${server.token}` } : {}) };
  if (server.url.startsWith('unix://')) return { socketPath: server.url.slice('unix://'.length), path: p, headers };
  const m = /^(?:tcp|http):\/\/([^/]+?)(?::(\d+))?\/?$/.exec(server.url);
  if (!m) throw new SlipwayError('ERR_USAGE', `invalid --server ${server.url}: use tcp://HOST:PORT, http://HOST:PORT or unix:///path.sock`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2] ?? 80), path: p, headers };
}

/** One request; resolves with the status and the response (unread). */
function request(server: FarmServer, method: string, p: string, body?: NodeJS.ReadableStream, headers?: Record<string, string>): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = http.request({ ...target(server, p, headers), method }, resolve);
    req.on('error', (e) => reject(new SlipwayError('ERR_USAGE', `cannot reach the farm at ${server.url}: ${e.message}`)));
    if (body) body.pipe(req);
    else req.end();
  });
}

async function readAll(res: http.IncomingMessage): Promise<string> {
  let text = '';
  for await (const c of res) text += (c as Buffer).toString();
  return text;
}

/** The server's error, in its own words, as one line. */
async function serverError(res: http.IncomingMessage): Promise<SlipwayError> {
  const text = await readAll(res);
  let message = text.trim();
  try {
    message = (JSON.parse(text) as { message?: string }).message ?? message;
  } catch { /* not JSON */ }
  return new SlipwayError(res.statusCode === 401 ? 'ERR_UNAUTHORIZED' : 'ERR_USAGE', `the farm answered ${res.statusCode}: ${message}`);
}

/** What a sealed-secrets header may hold: the server reads at most 64 KiB of headers. */
const MAX_SEALED_HEADER = 48 * 1024;

/**
 * `--secret` values sealed here for the workers' public keys (`GET /slipway/v1/secret-keys`), as
 * the `X-Slipway-Sealed-Secrets` header: the server and Redis see ciphertext only.
 */
async function sealedHeader(server: FarmServer, secrets: ReadonlyMap<string, Buffer>): Promise<Record<string, string>> {
  if (secrets.size === 0) return {};
  const res = await request(server, 'GET', '/slipway/v1/secret-keys');
  if (res.statusCode !== 200) throw await serverError(res);
  const { keys } = JSON.parse(await readAll(res)) as { keys: WorkerKeyJson[] };
  const value = Buffer.from(JSON.stringify(sealSecretsFor(keys, secrets))).toString('base64');
  if (value.length > MAX_SEALED_HEADER) throw new SlipwayError('ERR_USAGE', `--secret: the sealed secrets take ${value.length} bytes; through --server at most ${MAX_SEALED_HEADER} fit (submit straight to Redis for larger ones)`);
  return { 'x-slipway-sealed-secrets': value };
}

/** Packs `contextDir` and posts it to `POST /slipway/v1/builds`; the tenant is the token's. */
export async function submitRemote(server: FarmServer, contextDir: string, query: URLSearchParams, dockerfile: string, secrets: ReadonlyMap<string, Buffer> = new Map()): Promise<{ id: string; deduplicated: boolean }> {
  const st = await fs.stat(contextDir).catch(() => undefined);
  if (!st?.isDirectory()) throw new SlipwayError('ERR_USAGE', `unable to prepare context: path "${contextDir}" not found`);
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-submit-'));
  try {
    const tar = path.join(tmp, 'context.tar');
    const headers = await sealedHeader(server, secrets);
    await packContext(contextDir, tar, dockerfile);
    const res = await request(server, 'POST', `/slipway/v1/builds?${query.toString()}`, createReadStream(tar), headers);
    if (res.statusCode !== 200 && res.statusCode !== 201) throw await serverError(res);
    return JSON.parse(await readAll(res)) as { id: string; deduplicated: boolean };
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

/** Follows `GET /slipway/v1/builds/{id}/events`: prints the output, resolves with the result. */
export async function followRemote(server: FarmServer, id: string, onText: (t: string) => void): Promise<BuildJobResult> {
  const res = await request(server, 'GET', `/slipway/v1/builds/${encodeURIComponent(id)}/events`);
  if (res.statusCode !== 200) throw await serverError(res);
  let buf = '';
  let result: BuildJobResult | undefined;
  for await (const c of res) {
    buf += (c as Buffer).toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = JSON.parse(buf.slice(0, nl)) as { stream?: string; result?: BuildJobResult; error?: string };
      buf = buf.slice(nl + 1);
      if (line.stream !== undefined) onText(line.stream);
      if (line.result) result = line.result;
      if (line.error) throw new SlipwayError('ERR_INTERNAL', line.error);
    }
  }
  if (!result) throw new SlipwayError('ERR_INTERNAL', `the farm ended build ${id}'s events without a result`);
  return result;
}
