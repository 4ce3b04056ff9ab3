import { SlipwayError } from '../errors.js';
import { PARSE_ARGS_CODES, dockerFlagMessage } from './flag-errors.js';

/**
 * How the CLI tells a user what went wrong: one line (or Docker's multi-line form for usage
 * errors), never a JavaScript stack trace unless `--debug` or `SLIPWAY_DEBUG=1` asked for it.
 * Node's system errors (`ENOSPC: no space left on device, write`) are rewritten the way Go
 * programs such as dockerd print them: `mkdir /x/graph: read-only file system`.
 */

/** What the reporter needs to know about the run that failed. */
export interface ReportContext {
  /** The verb that ran (for "See 'slipway VERB --help'"). */
  command: string;
  /** The store root, named when a system error carries no path of its own. */
  root: string;
  debug: boolean;
}

/** `EACCES: permission denied, open '/x'` -> `open /x: permission denied`; undefined for other errors. */
export function describeSystemError(e: unknown, root?: string): string | undefined {
  const err = e as NodeJS.ErrnoException | null;
  if (!err || typeof err !== 'object' || typeof err.code !== 'string' || typeof err.syscall !== 'string') return undefined;
  const m = /^[A-Z0-9_]+: (.*?), [\w]+(?: '.*)?$/s.exec(err.message ?? '');
  const cause = (m?.[1] ?? err.code).toLowerCase();
  const where = err.path !== undefined ? `${err.syscall} ${err.path}` : err.syscall;
  const dest = (err as { dest?: string }).dest;
  const text = `${where}${dest !== undefined ? ` -> ${dest}` : ''}: ${cause}`;
  // A write into a full disk names no file: say which store it was.
  return err.path === undefined && root !== undefined ? `${text} (store ${root})` : text;
}

/** The first line of a message, without the `Error: ` prefixes that wrapping adds. */
export function firstLine(message: string): string {
  return message.replace(/^(?:Error: )+/, '').split('\n')[0]!.trim() || 'unknown error';
}

/** Prints the error for a user and returns the exit status. */
export function reportError(e: unknown, ctx: ReportContext): number {
  const write = (s: string) => process.stderr.write(s);
  let status = 1;
  if (e instanceof SlipwayError) {
    // A message that crossed a thread may carry its own "Error: " already: printed once.
    write(e.userText());
    status = e.exitCode;
  } else if (PARSE_ARGS_CODES.has((e as NodeJS.ErrnoException | null)?.code ?? '')) {
    const err = e as NodeJS.ErrnoException;
    write(`${dockerFlagMessage(err.code!, err.message, ctx.command)}\nSee 'slipway ${ctx.command} --help'.\n`);
    status = 125;
  } else {
    const sys = describeSystemError(e, ctx.root);
    write(`Error: ${sys ?? firstLine(e instanceof Error ? e.message : String(e))}\n`);
  }
  if (ctx.debug && e instanceof Error && e.stack) write(`${e.stack}\n`);
  return status;
}
