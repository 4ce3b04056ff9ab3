import type { ServerResponse } from 'node:http';
import { SlipwayError, type ErrorCode } from '../errors.js';

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

/** HTTP status per Slipway error code, as moby's errdefs map the same failures. */
const STATUS: Record<ErrorCode, number> = {
  ERR_DOCKERFILE_SYNTAX: 400,
  ERR_DOCKERFILE_NO_STAGE: 400,
  ERR_UNKNOWN_STAGE: 400,
  ERR_BAD_SUBSTITUTION: 400,
  ERR_CONTEXT_PATH: 400,
  ERR_FILE_NOT_FOUND: 400,
  ERR_COPY_DEST: 400,
  ERR_NO_SUCH_USER: 400,
  ERR_STEP_FAILED: 500,
  ERR_IMAGE_NOT_FOUND: 404,
  ERR_AMBIGUOUS_REFERENCE: 400,
  ERR_INVALID_REFERENCE: 400,
  ERR_IMAGE_CONFLICT: 409,
  ERR_BAD_ARCHIVE: 400,
  ERR_REGISTRY: 502,
  ERR_UNAUTHORIZED: 401,
  ERR_USAGE: 400,
  ERR_SANDBOX: 500,
  ERR_CANCELLED: 503,
  ERR_INTERNAL: 500,
};

/**
 * Turns anything thrown by a handler into an `ApiError`. Expected failures keep their message
 * and get their status from `STATUS`; an unexpected one becomes a 500 carrying only the first
 * line of its message (the server logs the stack).
 */
export function toApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  if (e instanceof SlipwayError) return new ApiError(STATUS[e.code], e.message);
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
