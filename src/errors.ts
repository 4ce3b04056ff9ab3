/**
 * Every error Slipway reports to a user: a closed set of stable codes, an optional 1-based
 * Dockerfile line, and a message that already reads as Docker would print it. Errors cross
 * worker threads and queues as plain data (`SlipwayErrorData`), because structured clone
 * drops custom classes and own properties.
 */
export type ErrorCode =
  | 'ERR_DOCKERFILE_SYNTAX'
  | 'ERR_DOCKERFILE_NO_STAGE'
  | 'ERR_UNKNOWN_STAGE'
  | 'ERR_BAD_SUBSTITUTION'
  | 'ERR_CONTEXT_PATH'
  | 'ERR_FILE_NOT_FOUND'
  | 'ERR_COPY_DEST'
  | 'ERR_NO_SUCH_USER'
  | 'ERR_STEP_FAILED'
  | 'ERR_IMAGE_NOT_FOUND'
  | 'ERR_AMBIGUOUS_REFERENCE'
  | 'ERR_INVALID_REFERENCE'
  | 'ERR_IMAGE_CONFLICT'
  | 'ERR_BAD_ARCHIVE'
  | 'ERR_REGISTRY'
  | 'ERR_UNAUTHORIZED'
  | 'ERR_USAGE'
  | 'ERR_SANDBOX'
  | 'ERR_CANCELLED'
  | 'ERR_INTERNAL';

/** The plain-data form of a `SlipwayError`, safe to post across threads and processes. */
export interface SlipwayErrorData {
  code: ErrorCode;
  message: string;
  line?: number;
  file?: string;
  exitCode?: number;
}

/** An expected failure with a stable code; `message` is what the user sees. */
export class SlipwayError extends Error {
  readonly code: ErrorCode;
  readonly line: number | undefined;
  readonly file: string | undefined;
  /** Exit status for the CLI (a failing RUN passes its own status through). */
  readonly exitCode: number;

  constructor(code: ErrorCode, message: string, opts: { line?: number; file?: string; exitCode?: number } = {}) {
    super(message);
    this.name = 'SlipwayError';
    this.code = code;
    this.line = opts.line;
    this.file = opts.file;
    this.exitCode = opts.exitCode ?? 1;
  }

  toData(): SlipwayErrorData {
    const d: SlipwayErrorData = { code: this.code, message: this.message, exitCode: this.exitCode };
    if (this.line !== undefined) d.line = this.line;
    if (this.file !== undefined) d.file = this.file;
    return d;
  }

  static fromData(d: SlipwayErrorData): SlipwayError {
    const opts: { line?: number; file?: string; exitCode?: number } = {};
    if (d.line !== undefined) opts.line = d.line;
    if (d.file !== undefined) opts.file = d.file;
    if (d.exitCode !== undefined) opts.exitCode = d.exitCode;
    return new SlipwayError(d.code, d.message, opts);
  }
}

/** A Dockerfile error printed as `Dockerfile:3: unknown instruction: FROBNICATE`. */
export function dockerfileError(code: ErrorCode, file: string, line: number, detail: string): SlipwayError {
  return new SlipwayError(code, `${file}:${line}: ${detail}`, { line, file });
}

/** Turns anything thrown into plain data (an unexpected error becomes ERR_INTERNAL). */
export function errorToData(e: unknown): SlipwayErrorData {
  if (e instanceof SlipwayError) return e.toData();
  const message = e instanceof Error ? e.message : String(e);
  return { code: 'ERR_INTERNAL', message };
}
