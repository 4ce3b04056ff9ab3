/**
 * The global flags (`--root DIR`, `--debug`/`-D`) are taken from anywhere on the line, as the
 * docker CLI's persistent flags are: `slipway build --root /x -t a .` is `slipway --root /x
 * build -t a .`. What is not a flag of Slipway's is left alone: everything after `--`, and in
 * `run` everything after the image name (the container's own arguments), and the value of a
 * flag that takes one (`build --build-arg --root`, `run -e --debug IMG`).
 */

/** What was taken out, and the arguments left for the verb. */
export interface GlobalFlags {
  argv: string[];
  debug: boolean;
  root?: string;
  /** A global flag that needs a value and had none. */
  missingValue?: string;
}

/**
 * `valueFlags` are the flags of the verb that take the next argument as their value (so that
 * argument is neither a global flag nor `run`'s image name).
 */
export function takeGlobalFlags(argv: readonly string[], valueFlags: (verb: string) => ReadonlySet<string>): GlobalFlags {
  const out: GlobalFlags = { argv: [], debug: false };
  let verb: string | undefined;
  let values: ReadonlySet<string> = new Set();
  let frozen = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (frozen) {
      out.argv.push(a);
      continue;
    }
    if (a === '--debug' || a === '-D') {
      out.debug = true;
    } else if (a === '--root') {
      const v = argv[i + 1];
      if (v === undefined || v === '') out.missingValue = '--root';
      else out.root = v;
      i++;
    } else if (a.startsWith('--root=')) {
      out.root = a.slice('--root='.length);
      if (out.root === '') out.missingValue = '--root';
    } else if (a === '--') {
      frozen = true;
      out.argv.push(a);
    } else if (a.startsWith('-')) {
      out.argv.push(a);
      // A verb's flag that takes a value: the value passes through untouched.
      if (verb !== undefined && values.has(a) && i + 1 < argv.length) out.argv.push(argv[++i]!);
    } else {
      out.argv.push(a);
      if (verb === undefined) {
        verb = a;
        values = valueFlags(a);
      } else if (verb === 'run') {
        frozen = true;
      }
    }
  }
  return out;
}
