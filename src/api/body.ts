import { PassThrough, Transform, type Readable, type TransformCallback } from 'node:stream';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiError } from './http-errors.js';

/** The server's size limits; every request body and header block is bounded by one of them. */
export interface ApiLimits {
  /** Request line plus headers (Node's `maxHeaderSize`); build args and labels travel in the query. */
  maxHeaderBytes: number;
  /** A build context tar, counted both as sent and as extracted (a gzip bomb stops here too). */
  maxContextBytes: number;
  /** A `docker load` archive. */
  maxLoadBytes: number;
  /** Any other request body (the API's other endpoints send none). */
  maxSmallBodyBytes: number;
}

/** Defaults: generous for real contexts and images, small for everything else. */
export const DEFAULT_LIMITS: ApiLimits = {
  maxHeaderBytes: 64 * 1024,
  maxContextBytes: 4 * 1024 ** 3,
  maxLoadBytes: 16 * 1024 ** 3,
  maxSmallBodyBytes: 64 * 1024,
};

/**
 * A pass-through that fails with a 413 once more than `max` bytes went through it. The check
 * is on the running total, so an attacker cannot make us buffer or extract past the limit.
 */
export function byteLimit(max: number, what: string): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      seen += chunk.length;
      if (seen > max) cb(new ApiError(413, `${what} exceeds the server's limit of ${max} bytes`));
      else cb(null, chunk);
    },
  });
}

/**
 * The request body as a stream whose failure never destroys the request itself: when a limit
 * trips, the socket stays open long enough to carry the 413. A client that goes away before the
 * body is complete ends the stream with an error instead of leaving its reader waiting.
 */
export function requestBody(req: IncomingMessage): Readable {
  const body = new PassThrough();
  req.pipe(body);
  req.once('close', () => {
    if (!req.complete) body.destroy(new Error('the client went away before the request body was complete'));
  });
  return body;
}

/**
 * Reads a small request body whole. The declared Content-Length is checked before any byte is
 * read, and the running total after each chunk (chunked uploads declare nothing).
 */
export async function readSmallBody(req: IncomingMessage, max: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (Number.isFinite(declared) && declared > max) throw new ApiError(413, `request body exceeds the server's limit of ${max} bytes`);
  const parts: Buffer[] = [];
  let total = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > max) throw new ApiError(413, `request body exceeds the server's limit of ${max} bytes`);
    parts.push(chunk);
  }
  return Buffer.concat(parts);
}

/** Answers with a JSON document (Docker's encoding: one value and a newline). */
export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = `${JSON.stringify(value)}\n`;
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

/** moby's `httputils.BoolValue`: anything but empty, 0, no, false and none is true. */
export function boolParam(q: URLSearchParams, name: string, dflt = false): boolean {
  const v = q.get(name);
  if (v === null) return dflt;
  return !['', '0', 'no', 'false', 'none'].includes(v.trim().toLowerCase());
}

/** A JSON query parameter (`buildargs`, `labels`, `filters`); malformed JSON is a 400. */
export function jsonParam(q: URLSearchParams, name: string): unknown {
  const v = q.get(name);
  if (v === null || v === '') return undefined;
  try {
    return JSON.parse(v) as unknown;
  } catch {
    throw new ApiError(400, `invalid JSON in parameter ${name}`);
  }
}

/** A JSON object of strings (`labels`); `nullable` also allows null values (`buildargs`). */
export function stringMapParam(q: URLSearchParams, name: string, nullable: boolean): Record<string, string | null> {
  const v = jsonParam(q, name);
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new ApiError(400, `parameter ${name} must be a JSON object`);
  const out: Record<string, string | null> = {};
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    if (typeof x === 'string' || (nullable && x === null)) out[k] = x;
    else throw new ApiError(400, `parameter ${name}: the value of ${JSON.stringify(k)} must be a string`);
  }
  return out;
}
