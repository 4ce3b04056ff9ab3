import { constants as osConstants } from 'node:os';
import type { Duplex } from 'node:stream';
import { resolveImage } from '../store/graph.js';
import { SlipwayError } from '../errors.js';
import { ApiError, badParameter } from './http-errors.js';
import { boolParam, readSmallBody, sendJson } from './body.js';
import { familiarName } from './names.js';
import { parseCreate, parseName } from './container-config.js';
import type { Container, StreamName } from './container.js';
import type { ContainerApiContext as ApiContext, ContainerApiRequest as ApiRequest } from './container-context.js';

/** `POST /containers/create`: checks the config and the image; the container runs on start. */
export async function createContainerRoute({ req, res, query }: ApiRequest, ctx: ApiContext): Promise<void> {
  const raw = await readSmallBody(req, ctx.limits.maxSmallBodyBytes);
  let body: unknown;
  try {
    body = JSON.parse(raw.toString('utf8'));
  } catch {
    throw badParameter('invalid JSON in the container config');
  }
  for (const k of query.keys()) if (k !== 'name' && k !== 'platform') throw badParameter(`unknown parameter ${k.slice(0, 64)}`);
  const platform = query.get('platform');
  if (platform && platform !== 'linux/amd64' && platform !== 'linux') throw badParameter(`image platform ${platform.slice(0, 64)} is not supported: this host is linux/amd64`);
  const create = parseCreate(body, ctx.policy);
  const name = parseName(query.get('name'));
  let imageId;
  try {
    imageId = await resolveImage(ctx.layout, familiarName(create.image));
  } catch (e) {
    // The CLI pulls on exactly this answer, then creates again.
    if (e instanceof SlipwayError && e.code === 'ERR_IMAGE_NOT_FOUND') throw new ApiError(404, `No such image: ${create.image}`);
    throw e;
  }
  const c = ctx.containers.create(create, imageId, name);
  sendJson(res, 201, { Id: c.id, Warnings: [] });
}

/** `POST /containers/{id}/start`. */
export async function startContainerRoute({ res, name }: ApiRequest, ctx: ApiContext): Promise<void> {
  const c = ctx.containers.get(name);
  if (c.state === 'running') {
    res.writeHead(304).end();
    return;
  }
  ctx.containers.start(c);
  res.writeHead(204).end();
}

/**
 * `POST /containers/{id}/wait?condition=not-running|next-exit|removed`: the headers go at
 * once (the CLI waits before it starts the container), the status when the condition holds.
 */
export async function waitContainerRoute({ res, name, query }: ApiRequest, ctx: ApiContext): Promise<void> {
  const c = ctx.containers.get(name);
  const condition = query.get('condition') || 'not-running';
  if (!['not-running', 'next-exit', 'removed'].includes(condition)) throw badParameter(`invalid condition: "${condition.slice(0, 64)}"`);
  res.writeHead(200, { 'Content-Type': 'application/json' });
  res.flushHeaders();
  // A client that goes away stops the wait (nothing is left waiting for a removal that never comes).
  const gone = new Promise<'gone'>((r) => res.once('close', () => r('gone')));
  const cond = condition === 'removed' ? c.gone() : condition === 'next-exit' && c.state === 'exited' ? gone : c.exited();
  if ((await Promise.race([cond, gone])) === 'gone') return;
  res.end(`${JSON.stringify({ StatusCode: c.exitCode })}\n`);
}

function dimension(query: URLSearchParams, k: string): number {
  const v = query.get(k) ?? '';
  if (!/^\d{1,5}$/.test(v) || Number(v) < 1 || Number(v) > 9999) throw badParameter(`invalid ${k} ${JSON.stringify(v.slice(0, 16))}: 1 to 9999`);
  return Number(v);
}

/** `POST /containers/{id}/resize?h=&w=`: the pty's size (the kernel tells the container). */
export async function resizeContainerRoute({ res, name, query }: ApiRequest, ctx: ApiContext): Promise<void> {
  const c = ctx.containers.get(name);
  const h = dimension(query, 'h');
  const w = dimension(query, 'w');
  if (!c.req.tty) throw new ApiError(409, `container ${c.id.slice(0, 12)} has no tty`);
  c.resize(h, w);
  res.writeHead(200).end();
}

/** Signals by name (`KILL`, `SIGTERM`) or number, as `docker kill -s` sends them. */
function parseSignal(v: string | null): NodeJS.Signals {
  if (v === null || v === '') return 'SIGKILL';
  const byNumber = /^\d{1,2}$/.test(v) ? Object.entries(osConstants.signals).find(([, n]) => n === Number(v))?.[0] : undefined;
  const name = byNumber ?? (v.toUpperCase().startsWith('SIG') ? v.toUpperCase() : `SIG${v.toUpperCase()}`);
  if (!Object.hasOwn(osConstants.signals, name)) throw badParameter(`invalid signal: ${v.slice(0, 32)}`);
  return name as NodeJS.Signals;
}

/** `POST /containers/{id}/kill?signal=`. */
export async function killContainerRoute({ res, name, query }: ApiRequest, ctx: ApiContext): Promise<void> {
  const c = ctx.containers.get(name);
  const sig = parseSignal(query.get('signal'));
  if (c.state !== 'running') throw new ApiError(409, `cannot kill container: ${name.slice(0, 128)}: container ${c.id} is not running`);
  c.kill(sig);
  res.writeHead(204).end();
}

/** `POST /containers/{id}/stop?t=`: SIGTERM, then SIGKILL after t seconds (default 10). */
export async function stopContainerRoute({ res, name, query }: ApiRequest, ctx: ApiContext): Promise<void> {
  const c = ctx.containers.get(name);
  const t = query.get('t');
  if (t !== null && !/^-?\d{1,5}$/.test(t)) throw badParameter(`invalid t ${JSON.stringify(t.slice(0, 16))}`);
  if (c.state !== 'running') {
    res.writeHead(304).end();
    return;
  }
  c.kill(parseSignal(query.get('signal') ?? 'SIGTERM'));
  const secs = t === null ? 10 : Number(t);
  const timer = secs >= 0 ? setTimeout(() => c.kill('SIGKILL'), secs * 1000) : undefined;
  await c.exited();
  clearTimeout(timer);
  res.writeHead(204).end();
}

/** `DELETE /containers/{id}?force=`. */
export async function removeContainerRoute({ res, name, query }: ApiRequest, ctx: ApiContext): Promise<void> {
  const c = ctx.containers.get(name);
  if (boolParam(query, 'link')) throw badParameter('slipway has no container links');
  ctx.containers.remove(c, boolParam(query, 'force'));
  if (c.state === 'running') await c.exited();
  res.writeHead(204).end();
}

/** Docker's multiplexed stream frame: [stream, 0, 0, 0, size (uint32 BE)] then the bytes. */
export function frame(chunk: Buffer, stream: StreamName): Buffer {
  const h = Buffer.alloc(8);
  h[0] = stream === 'stdout' ? 1 : 2;
  h.writeUInt32BE(chunk.length, 4);
  return Buffer.concat([h, chunk]);
}

/** `GET /containers/{id}/logs`: the kept output, framed unless the container has a tty. */
export async function logsContainerRoute({ res, name, query }: ApiRequest, ctx: ApiContext): Promise<void> {
  const c = ctx.containers.get(name);
  for (const k of ['since', 'until']) if (query.get(k) && query.get(k) !== '0') throw badParameter(`slipway's logs take no ${k}`);
  const want = { stdout: boolParam(query, 'stdout'), stderr: boolParam(query, 'stderr') };
  if (!want.stdout && !want.stderr) throw badParameter('you must choose at least one stream');
  const tail = query.get('tail') ?? 'all';
  if (tail !== 'all' && !/^\d{1,9}$/.test(tail)) throw badParameter(`invalid tail ${JSON.stringify(tail.slice(0, 16))}`);
  const stamps = boolParam(query, 'timestamps');
  let entries = c.logs().filter((e) => want[e.stream]);
  if (tail !== 'all') entries = tailLines(entries, Number(tail));
  res.writeHead(200, { 'Content-Type': c.req.tty ? 'application/vnd.docker.raw-stream' : 'application/vnd.docker.multiplexed-stream' });
  const send = (chunk: Buffer, stream: StreamName, at: string) => {
    const data = stamps ? Buffer.from(chunk.toString('utf8').split(/(?<=\n)/).map((l) => `${at} ${l}`).join('')) : chunk;
    res.write(c.req.tty ? data : frame(data, stream));
  };
  for (const e of entries) send(e.chunk, e.stream, e.at);
  if (boolParam(query, 'follow') && c.state !== 'exited') {
    const detach = c.attach({ data: (chunk, stream) => { if (want[stream]) send(chunk, stream, new Date().toISOString()); }, end: () => res.end() });
    res.once('close', detach);
    return;
  }
  res.end();
}

/** The last n lines of the kept output. */
function tailLines<T extends { chunk: Buffer }>(entries: T[], n: number): T[] {
  if (n === 0) return [];
  let lines = 0;
  for (let i = entries.length - 1; i >= 0; i--) {
    lines += entries[i]!.chunk.toString('utf8').split('\n').length - 1;
    if (lines >= n + (entries.at(-1)!.chunk.toString().endsWith('\n') ? 0 : 1)) return entries.slice(i);
  }
  return entries;
}

/**
 * `POST /containers/{id}/attach` on a hijacked connection (`Upgrade: tcp`): output flows to the
 * client (raw with a tty, else framed) until the container exits; the client's bytes are its
 * stdin, and the client's half-close ends that stdin.
 */
export function attachHijacked(c: Container, query: URLSearchParams, socket: Duplex, head: Buffer): void {
  if (query.get('detachKeys')) throw badParameter('slipway does not support detach keys');
  if (boolParam(query, 'logs')) throw badParameter('slipway does not replay logs on attach: use GET /containers/{id}/logs');
  const want = { stdout: boolParam(query, 'stdout'), stderr: boolParam(query, 'stderr') };
  const stdin = boolParam(query, 'stdin');
  const type = c.req.tty ? 'application/vnd.docker.raw-stream' : 'application/vnd.docker.multiplexed-stream';
  socket.write(`HTTP/1.1 101 UPGRADED\r\nContent-Type: ${type}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n`);
  const detach = c.attach({
    data: (chunk, stream) => { if (want[stream] && socket.writable) socket.write(c.req.tty ? chunk : frame(chunk, stream)); },
    end: () => socket.end(),
  });
  if (stdin) {
    if (head.length > 0) c.input(head);
    socket.on('data', (b: Buffer) => c.input(b));
    socket.on('end', () => c.endInput());
  }
  socket.on('error', () => undefined);
  socket.on('close', detach);
}
