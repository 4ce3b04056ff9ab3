/**
 * Every error Slipway reports to a user: a closed set of stable codes, an optional 1-based
 * Dockerfile line, and a message that already reads as Docker would print it. Errors cross
 * worker threads and queues as plain data (`SlipwayErrorData`), because structured clone
 * drops custom classes and own properties.
 */
/**
 * The one table of error codes: the HTTP status the Engine API answers with (as moby's errdefs
 * map the same failures) and whose fault it is. A `user` error (a bad Dockerfile, a failing RUN,
 * a missing image) is final: the farm reports it and never retries it, metrics count it as a
 * failed build. An `infrastructure` error (the sandbox, a registry, an internal fault) may go
 * away on another attempt. Every other table (API status, farm retry, metrics outcome, the
 * worker-thread boundary) is derived from this one.
 */
export const ERRORS = {
  ERR_DOCKERFILE_SYNTAX: { http: 400, kind: 'user' },
  ERR_DOCKERFILE_NO_STAGE: { http: 400, kind: 'user' },
  ERR_UNKNOWN_STAGE: { http: 400, kind: 'user' },
  ERR_BAD_SUBSTITUTION: { http: 400, kind: 'user' },
  ERR_CONTEXT_PATH: { http: 400, kind: 'user' },
  ERR_FILE_NOT_FOUND: { http: 400, kind: 'user' },
  ERR_COPY_DEST: { http: 400, kind: 'user' },
  ERR_NO_SUCH_USER: { http: 400, kind: 'user' },
  ERR_STEP_FAILED: { http: 500, kind: 'user' },
  ERR_IMAGE_NOT_FOUND: { http: 404, kind: 'user' },
  ERR_AMBIGUOUS_REFERENCE: { http: 400, kind: 'user' },
  ERR_INVALID_REFERENCE: { http: 400, kind: 'user' },
  ERR_IMAGE_CONFLICT: { http: 409, kind: 'user' },
  ERR_BAD_ARCHIVE: { http: 400, kind: 'user' },
  /** An option's value the engine cannot use (a limit, a format, a policy), wherever it came from. */
  ERR_INVALID_OPTION: { http: 400, kind: 'user' },
  ERR_UNAUTHORIZED: { http: 401, kind: 'user' },
  /** The command line itself (unknown flag, missing argument): only the CLI throws it. */
  ERR_USAGE: { http: 400, kind: 'user' },
  ERR_REGISTRY: { http: 502, kind: 'infrastructure' },
  ERR_SANDBOX: { http: 500, kind: 'infrastructure' },
  ERR_CANCELLED: { http: 503, kind: 'infrastructure' },
  ERR_INTERNAL: { http: 500, kind: 'infrastructure' },
} as const satisfies Record<string, { http: number; kind: 'user' | 'infrastructure' }>;

export type ErrorCode = keyof typeof ERRORS;

/** True for a string that is one of the codes (data from another thread or process). */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERRORS, code);
}

/** A user's error is final; anything else may be retried. */
export function isUserError(code: ErrorCode): boolean {
  return ERRORS[code].kind === 'user';
}

/** The Engine API's status for a code. */
export function httpStatusOf(code: ErrorCode): number {
  return ERRORS[code].http;
}

/** The plain-data form of a `SlipwayError`, safe to post across threads and processes. */
export interface SlipwayErrorData {
  code: ErrorCode;
  message: string;
  line?: number;
  file?: string;
  exitCode?: number;
  bare?: boolean;
}

/** An expected failure with a stable code; `message` is what the user sees. */
export class SlipwayError extends Error {
  readonly code: ErrorCode;
  readonly line: number | undefined;
  readonly file: string | undefined;
  /** Exit status for the CLI (a failing RUN passes its own status through). */
  readonly exitCode: number;
  /** The CLI prints the message as it is, without `Error: `, as Docker prints these (the seed's transcripts). */
  readonly bare: boolean;

  constructor(code: ErrorCode, message: string, opts: { line?: number; file?: string; exitCode?: number; bare?: boolean } = {}) {
    super(message);
    this.name = 'SlipwayError';
    this.code = code;
    this.line = opts.line;
    this.file = opts.file;
    this.exitCode = opts.exitCode ?? 1;
    this.bare = opts.bare ?? false;
  }

  toData(): SlipwayErrorData {
    const d: SlipwayErrorData = { code: this.code, message: this.message, exitCode: this.exitCode };
    if (this.line !== undefined) d.line = this.line;
    if (this.file !== undefined) d.file = this.file;
    if (this.bare) d.bare = true;
    return d;
  }

  /**
   * The line a user sees: `Error: ` and the message (once, however many wrappings added it),
   * or the message alone for usage errors and Docker's bare messages. The CLI prints it
   * (cli/report-error.ts), and the resident engine renders it for the native client.
   */
  userText(): string {
    return `${this.code === 'ERR_USAGE' || this.bare ? '' : 'Error: '}${this.message.replace(/^(?:Error: )+/, '')}\n`;
  }

  static fromData(d: SlipwayErrorData): SlipwayError {
    const opts: { line?: number; file?: string; exitCode?: number; bare?: boolean } = {};
    if (d.line !== undefined) opts.line = d.line;
    if (d.file !== undefined) opts.file = d.file;
    if (d.exitCode !== undefined) opts.exitCode = d.exitCode;
    if (d.bare) opts.bare = true;
    return new SlipwayError(d.code, d.message, opts);
  }
}

/**
 * The one place a Dockerfile location goes into an error: `Dockerfile:3: unknown instruction:
 * FROBNICATE`. The line and file stay fields; `detailOf` gives the message without them.
 */
export function dockerfileError(code: ErrorCode, file: string, line: number, detail: string): SlipwayError {
  return new SlipwayError(code, `${file}:${line}: ${detail}`, { line, file });
}

/** A located error's message without its `file:line: ` (the API's build stream shows it so, as dockerd). */
export function detailOf(d: Pick<SlipwayErrorData, 'message' | 'line' | 'file'>): string {
  if (d.line === undefined) return d.message;
  const prefix = `${d.file ?? 'Dockerfile'}:${d.line}: `;
  return d.message.startsWith(prefix) ? d.message.slice(prefix.length) : d.message;
}

/**
 * A located error with its location always shown (the farm's result): a failing RUN's message,
 * Docker's own `The command … returned a non-zero code`, carries its line as a field only.
 */
export function withLocation(d: SlipwayErrorData): SlipwayErrorData {
  if (d.line === undefined) return d;
  const prefix = `${d.file ?? 'Dockerfile'}:${d.line}: `;
  return d.message.startsWith(prefix) ? d : { ...d, message: `${prefix}${d.message}` };
}

/**
 * Any error as plain data, the one serializer across threads, processes and queues: a
 * SlipwayError whole; anything else with its message and, when present, its `code` (a Slipway
 * code that lost its class crossing a boundary, or a system errno such as ENOENT), line, file
 * and exit status.
 */
export interface PlainErrorData { message: string; code?: string; line?: number; file?: string; exitCode?: number; bare?: boolean }

export function toPlainError(e: unknown): PlainErrorData {
  if (e instanceof SlipwayError) return e.toData();
  const d: PlainErrorData = { message: e instanceof Error ? e.message : String(e) };
  const o = (typeof e === 'object' && e !== null ? e : {}) as Record<string, unknown>;
  if (typeof o['code'] === 'string') d.code = o['code'];
  if (typeof o['line'] === 'number') d.line = o['line'];
  if (typeof o['file'] === 'string') d.file = o['file'];
  if (typeof o['exitCode'] === 'number') d.exitCode = o['exitCode'];
  return d;
}

/** The error again: a SlipwayError for one of our codes, else an Error that keeps its code (a system error stays one). */
export function fromPlainError(d: PlainErrorData): Error {
  if (isErrorCode(d.code)) return SlipwayError.fromData({ ...d, code: d.code });
  const e = new Error(d.message) as Error & Partial<PlainErrorData>;
  if (d.code !== undefined) e.code = d.code;
  if (d.line !== undefined) e.line = d.line;
  return e;
}

/** Turns anything thrown into a SlipwayError's data (anything without one of our codes becomes ERR_INTERNAL). */
export function errorToData(e: unknown): SlipwayErrorData {
  const d = toPlainError(e);
  return isErrorCode(d.code) ? { ...d, code: d.code } : { code: 'ERR_INTERNAL', message: d.message };
}
