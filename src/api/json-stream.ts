import type { ServerResponse } from 'node:http';
import { SlipwayError } from '../errors.js';
import { sendError, toApiError } from './http-errors.js';

/** One message of a push or pull answer (Docker's `JSONMessage` subset). */
export interface StreamMessage {
  status?: string;
  id?: string;
  progressDetail?: { current?: number; total?: number };
  aux?: unknown;
}

/** What a `ProgressStream` needs besides the response. */
export interface ProgressStreamOptions {
  /**
   * Messages for which this returns true are held back until one for which it returns false:
   * moby answers a push or pull with a plain HTTP error (a 401 the CLI can act on, a 404)
   * when it fails before its first real progress, and so do we.
   */
  holdWhile?: (m: StreamMessage) => boolean;
  /** Drop `Pushing`/`Downloading` updates closer than this to the last one of the same layer (ms). */
  throttleMs?: number;
}

/**
 * A push or pull answer: JSON messages, each followed by `\r\n` (moby's stream formatter).
 * Until the first message is written, an error is still a plain HTTP error; afterwards it is
 * a final `{"errorDetail": {...}, "error": "..."}` message on the 200 answer.
 */
export class ProgressStream {
  private readonly held: StreamMessage[] = [];
  private releasedHold = false;
  private readonly lastUpdate = new Map<string, number>();

  constructor(private readonly res: ServerResponse, private readonly opts: ProgressStreamOptions = {}) {}

  /** True once the answer's status line went out. */
  get started(): boolean {
    return this.res.headersSent;
  }

  private write(m: unknown): void {
    if (this.res.destroyed) return;
    if (!this.res.headersSent) this.res.writeHead(200, { 'Content-Type': 'application/json' });
    this.res.write(`${JSON.stringify(m)}\r\n`);
  }

  /** Queues or writes one message; never throws (a registry progress sink must not). */
  message = (m: StreamMessage): void => {
    if (!this.releasedHold) {
      if (this.opts.holdWhile?.(m)) {
        this.held.push(m);
        return;
      }
      this.releasedHold = true;
      for (const h of this.held.splice(0)) this.write(shape(h));
    }
    if (this.throttled(m)) return;
    this.write(shape(m));
  };

  /** Progress updates of one layer are thinned out; every other message passes. */
  private throttled(m: StreamMessage): boolean {
    const detail = m.progressDetail;
    if (!this.opts.throttleMs || m.id === undefined || detail?.current === undefined) return false;
    const key = `${m.id} ${m.status ?? ''}`;
    const now = Date.now();
    const last = this.lastUpdate.get(key);
    const final = detail.total !== undefined && detail.current >= detail.total;
    if (!final && last !== undefined && now - last < this.opts.throttleMs) return true;
    this.lastUpdate.set(key, now);
    return false;
  }

  /** Writes whatever is held back and ends the answer. */
  end(): void {
    for (const h of this.held.splice(0)) this.write(shape(h));
    if (!this.res.headersSent) this.res.writeHead(200, { 'Content-Type': 'application/json' });
    this.res.end();
  }

  /**
   * Ends with an error: a plain HTTP error before the first message, an error message after it.
   * `inStream` sends it as a message even then, which the CLI prints bare (without its
   * `Error response from daemon:` prefix) and exits 1 on.
   */
  fail(e: unknown, opts: { inStream?: boolean } = {}): void {
    if (!this.res.headersSent && !opts.inStream) {
      this.held.length = 0;
      sendError(this.res, toApiError(e));
      return;
    }
    const err = toApiError(e);
    const code = e instanceof SlipwayError ? e.exitCode : 1;
    this.write({ errorDetail: { code, message: err.message }, error: err.message });
    this.res.end();
  }
}

/** moby omits an empty `status` (the final push message is `{"progressDetail":{},"aux":{...}}`). */
function shape(m: StreamMessage): StreamMessage {
  if (m.status !== '') return m;
  const { status: _drop, ...rest } = m;
  return rest;
}
