import { SANDBOX_FLAGS } from '../sandbox/limits.js';

/**
 * The `run` flags that take a value as the next argument. `run`'s options end at the image
 * name, and an argument after such a flag is its value, not the image: both `run` and the
 * global `--debug` handling need to know which.
 */
export const RUN_VALUE_FLAGS: ReadonlySet<string> = new Set([
  '-e', '--env', '-u', '--user', '-w', '--workdir', '--network',
  ...Object.entries(SANDBOX_FLAGS).flatMap(([name, o]) => [`--${name}`, ...('short' in o ? [`-${o.short}`] : [])]),
]);
