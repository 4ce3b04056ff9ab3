import type { ServerResponse } from 'node:http';
import { SlipwayError, httpStatusOf } from '../errors.js';

/**
 * An error the Engine API answers with its own HTTP status and Docker's body shape,
 * `{"message": "..."}`; the docker CLI prints it as `Error response from daemon: <message>`.
 */
export class ApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = 'ApiError';
  }
}

/**
 * Turns anything thrown by a handler into an `ApiError`. Expected failures keep their message
 * and get their status from the table in errors.ts; an unexpected one becomes a 500 carrying only the first
 * line of its message (the server logs the stack).
 */
export function toApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  if (e instanceof SlipwayError) return new ApiError(httpStatusOf(e.code), e.message);
  return new ApiError(500, `internal error: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`);
}

/** Writes Docker's JSON error body, unless the response has already started. */
export function sendError(res: ServerResponse, err: ApiError): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const body = `${JSON.stringify({ message: err.message })}\n`;
  // A refused body may still be arriving: the connection cannot carry another request.
  if (err.status === 413) res.setHeader('Connection', 'close');
  res.writeHead(err.status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

/** 400 for a malformed parameter. */
export function badParameter(message: string): ApiError {
  return new ApiError(400, message);
}

/** 404 with Docker's wording for a missing object. */
export function notFound(message: string): ApiError {
  return new ApiError(404, message);
}
