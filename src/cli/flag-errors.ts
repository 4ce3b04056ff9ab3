/**
 * Node's `util.parseArgs` errors in the docker CLI's words (cobra/pflag's):
 * `unknown flag: --frob`, `unknown shorthand flag: 'x' in -x`, `flag needs an argument: --tag`.
 */

/** The parseArgs error codes this module rewrites. */
export const PARSE_ARGS_CODES: ReadonlySet<string> = new Set(['ERR_PARSE_ARGS_UNKNOWN_OPTION', 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE', 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL']);

/** The one-line message for a parseArgs error of `verb`. */
export function dockerFlagMessage(code: string, message: string, verb: string): string {
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const name = /'(-[^'=]*)/.exec(message)?.[1] ?? '';
    if (/^-[^-]/.test(name)) return `unknown shorthand flag: '${name.slice(1, 2)}' in ${name}`;
    return `unknown flag: ${name}`;
  }
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    // "Option '-t, --tag <value>' argument missing" / "Option '-q, --quiet' does not take an argument"
    const names = /Option '([^']*)'/.exec(message)?.[1]?.replace(/ <value>$/, '') ?? '';
    const long = names.split(', ').pop() ?? names;
    if (/argument missing/.test(message)) return `flag needs an argument: ${long}`;
    return `invalid argument for "${names}" flag: it takes no value`;
  }
  const arg = /argument '([^']*)'/.exec(message)?.[1];
  return `"slipway ${verb}" accepts no arguments${arg !== undefined ? ` (got "${arg}")` : ''}`;
}
