import { SlipwayError } from '../errors.js';
import { StoreLayout } from '../store/layout.js';
// Not from graph.ts, which every command would then load (with node:crypto) to sweep nothing.
import { sweepOwnTmp } from '../store/own-tmp.js';
import { COMMANDS, type Command } from './commands.js';
import { reportError } from './report-error.js';
import { takeGlobalFlags } from './global-flags.js';

const USAGE = `Usage:  slipway [--root DIR] [--debug] COMMAND [OPTIONS]   (global flags may also come anywhere on the line)

A Dockerfile build engine with Docker's image store layout and verbs.

Global options:
      --root DIR   Store root (env SLIPWAY_ROOT; default /var/lib/slipway)
  -D, --debug      Print the stack trace of an error too (env SLIPWAY_DEBUG=1)

Commands:
${Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(9)} ${c.summary}`).join('\n')}

Run 'slipway COMMAND --help' for more information on a command.
`;

/** Verbs that never touch the store (the farm's client side and registry credentials): no root needed. */
const ROOTLESS = new Set(['submit', 'farm', 'login', 'logout', 'search']);
/** Long-running verbs: their scratch folders are swept by their own shutdown, not at exit. */
const LONG_RUNNING = new Set(['serve', 'worker']);

/** Parses the global options, dispatches to a command, prints errors Docker's way. */
export async function main(argv0: string[]): Promise<number> {
  // run's value flags come with the sandbox's: loaded only when they matter.
  const runFlags = argv0.includes('run') ? (await import('./run-flags.js')).RUN_VALUE_FLAGS : new Set<string>();
  // Global flags are taken from anywhere on the line, as docker's persistent flags are.
  const globals = takeGlobalFlags(argv0, (verb) => (verb === 'run' ? runFlags : new Set()));
  if (globals.missingValue) return usageError(`flag needs an argument: ${globals.missingValue}`);
  const { argv } = globals;
  const debug = globals.debug || process.env['SLIPWAY_DEBUG'] === '1';
  const root = globals.root ?? (process.env['SLIPWAY_ROOT'] || '/var/lib/slipway');
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-h' || a === '--help') {
      process.stdout.write(USAGE);
      return 0;
    } else if (a.startsWith('-')) {
      process.stderr.write(`unknown flag: ${a.replace(/=.*$/s, '')}\nSee 'slipway --help'.\n`);
      return 125;
    } else break;
  }
  const name = argv[i];
  if (!name) {
    process.stdout.write(USAGE);
    return 0;
  }
  const cmd: Command | undefined = COMMANDS[name];
  if (!cmd) return usageError(`'${name}' is not a slipway command.\nSee 'slipway --help'`);
  const rest = argv.slice(i + 1);
  const firstPositional = rest.findIndex((a) => !a.startsWith('-'));
  const flagsPart = name === 'run' && firstPositional >= 0 ? rest.slice(0, firstPositional) : rest;
  if (flagsPart.includes('--help') || (name !== 'run' && flagsPart.includes('-h'))) {
    process.stdout.write(`Usage:  slipway ${name} ${cmd.usage}\n\n${cmd.summary}\n${cmd.help ? `\n${cmd.help}\n` : ''}`);
    return 0;
  }
  const layout = new StoreLayout(root);
  try {
    // The store, overlay mounts and namespaces all need root: say so before anything fails on it.
    if (!ROOTLESS.has(name) && process.getuid?.() !== 0) throw new SlipwayError('ERR_USAGE', 'slipway needs root (overlay mounts and namespaces)');
    return await cmd.run(rest, { layout });
  } catch (e) {
    return reportError(e, { command: name, root, debug });
  } finally {
    // Whatever a failure left in graph/_tmp under this process's name goes with it.
    if (!ROOTLESS.has(name) && !LONG_RUNNING.has(name)) await sweepOwnTmp(layout).catch(() => undefined);
  }
}

function usageError(msg: string): number {
  process.stderr.write(`slipway: ${msg}\n`);
  return 125;
}

/**
 * A reader that goes away (`slipway stats | head -4`) ends the output quietly: writes after
 * that are dropped and the command finishes (a build still completes and tags its image).
 */
function quietOnClosedPipe(stream: NodeJS.WriteStream): void {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE' || e.code === 'ERR_STREAM_DESTROYED') return;
    throw e;
  });
}

/** Last resort for an error no command caught (an 'error' event nobody listened to): one line, then exit. */
function fatal(e: unknown): void {
  const debug = process.argv.includes('--debug') || process.env['SLIPWAY_DEBUG'] === '1';
  reportError(e, { command: 'slipway', root: process.env['SLIPWAY_ROOT'] || '/var/lib/slipway', debug });
  process.exit(1);
}

quietOnClosedPipe(process.stdout);
quietOnClosedPipe(process.stderr);
process.on('uncaughtException', fatal);
// `serve` logs a stray rejection and keeps serving: only without such a handler is it fatal.
process.on('unhandledRejection', (e) => { if (process.listenerCount('unhandledRejection') === 1) fatal(e); });
main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
}, fatal);
