import { SlipwayError } from '../errors.js';

/**
 * How the CLI tells a user what went wrong: one line (or Docker's multi-line form for usage
 * errors), never a JavaScript stack trace unless `--debug` or `SLIPWAY_DEBUG=1` asked for it.
 * Node's system errors (`ENOSPC: no space left on device, write`) are rewritten the way Go
 * programs such as dockerd print them: `mkdir /x/graph: read-only file system`.
 */

const PARSE_ARGS_CODES = new Set(['ERR_PARSE_ARGS_UNKNOWN_OPTION', 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE', 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL']);

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
    // A message that crossed a thread may carry its own "Error: " already: print it once.
    write(`${e.code === 'ERR_USAGE' ? '' : 'Error: '}${e.message.replace(/^(?:Error: )+/, '')}\n`);
    status = e.exitCode;
  } else if (PARSE_ARGS_CODES.has((e as NodeJS.ErrnoException | null)?.code ?? '')) {
    write(`slipway: ${(e as Error).message}\nSee 'slipway ${ctx.command} --help'.\n`);
    status = 125;
  } else {
    const sys = describeSystemError(e, ctx.root);
    write(`Error: ${sys ?? firstLine(e instanceof Error ? e.message : String(e))}\n`);
  }
  if (ctx.debug && e instanceof Error && e.stack) write(`${e.stack}\n`);
  return status;
}

/**
 * Takes `--debug` out of the arguments wherever it is, except where it belongs to something
 * else: after `--`, and in `run` after the image name (there it is the container's argument;
 * `runValueFlags` are run's flags whose value is the next argument, so that is not the image).
 */
export function takeDebugFlag(argv: string[], runValueFlags: ReadonlySet<string>): { argv: string[]; debug: boolean } {
  let debug = false;
  const out: string[] = [];
  let command: string | undefined;
  let frozen = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (frozen) {
      out.push(a);
      continue;
    }
    if (a === '--debug') {
      debug = true;
      continue;
    }
    if (a === '--') frozen = true;
    out.push(a);
    if (a === '--root') {
      if (command === undefined && i + 1 < argv.length) out.push(argv[++i]!);
      continue;
    }
    if (a.startsWith('-')) continue;
    if (command === undefined) command = a;
    else if (command === 'run' && !runValueFlags.has(argv[i - 1] ?? '')) frozen = true;
  }
  return { argv: out, debug };
}
