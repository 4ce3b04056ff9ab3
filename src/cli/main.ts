#!/usr/bin/env node
import { SlipwayError } from '../errors.js';
import { StoreLayout } from '../store/layout.js';
import { COMMANDS, type Command } from './commands.js';

const USAGE = `Usage:  slipway [--root DIR] COMMAND [OPTIONS]

A Dockerfile build engine with Docker's image store layout and verbs.

Global options:
      --root DIR   Store root (env SLIPWAY_ROOT; default /var/lib/slipway)

Commands:
${Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(9)} ${c.summary}`).join('\n')}

Run 'slipway COMMAND --help' for more information on a command.
`;

/** Parses the global options, dispatches to a command, prints errors Docker's way. */
export async function main(argv: string[]): Promise<number> {
  let root = process.env['SLIPWAY_ROOT'] || '/var/lib/slipway';
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--root') {
      const v = argv[++i];
      if (!v) return usageError('flag needs an argument: --root');
      root = v;
    } else if (a.startsWith('--root=')) root = a.slice(7);
    else if (a === '-h' || a === '--help') {
      process.stdout.write(USAGE);
      return 0;
    } else if (a.startsWith('-')) return usageError(`unknown flag: ${a}`);
    else break;
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
  try {
    return await cmd.run(rest, { layout: new StoreLayout(root) });
  } catch (e) {
    if (e instanceof SlipwayError) {
      process.stderr.write(`${e.code === 'ERR_USAGE' ? '' : 'Error: '}${e.message}\n`);
      return e.exitCode;
    }
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' || err.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
      return usageError(`${err.message}\nSee 'slipway ${name} --help'.`);
    }
    process.stderr.write(`Error: ${err.stack ?? String(e)}\n`);
    return 1;
  }
}

function usageError(msg: string): number {
  process.stderr.write(`slipway: ${msg}\n`);
  return 125;
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
}, (e) => {
  process.stderr.write(`${String(e)}\n`);
  process.exitCode = 1;
});
