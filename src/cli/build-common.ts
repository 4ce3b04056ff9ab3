/**
 * What the two ways of running `slipway build` share: its options, Ctrl-C handling and the
 * legacy output. build-cmd.ts parses and checks, then hands the build to the resident engine
 * (engine-client.ts) or to build-local.ts, which loads the engine's modules in this process.
 */
import { parseArgs } from 'node:util';
import { renderLegacy, type BuildEvent } from '../scheduler/progress.js';
import { SANDBOX_FLAGS } from '../sandbox/limits.js';
import { BUILD_EXTRA_FLAGS } from './build-flags.js';

/** Every option of `slipway build`. */
export const BUILD_OPTIONS = {
  tag: { type: 'string', short: 't', multiple: true },
  file: { type: 'string', short: 'f' },
  'build-arg': { type: 'string', multiple: true },
  target: { type: 'string' },
  'no-cache': { type: 'boolean' },
  quiet: { type: 'boolean', short: 'q' },
  network: { type: 'string' },
  workers: { type: 'string' },
  'storage-driver': { type: 'string' },
  plan: { type: 'boolean' },
  rm: { type: 'boolean' },
  'force-rm': { type: 'boolean' },
  secret: { type: 'string', multiple: true }, ssh: { type: 'string', multiple: true }, allow: { type: 'string', multiple: true },
  ...BUILD_EXTRA_FLAGS,
  ...SANDBOX_FLAGS,
} as const;

/** The parsed options of `slipway build`. */
export type BuildValues = ReturnType<typeof parseBuildOptions>['values'];

export function parseBuildOptions(args: string[]) {
  return parseArgs({ args, options: BUILD_OPTIONS, allowPositionals: true });
}

/** SIGINT and SIGTERM cancel the build (running steps are killed, nothing after them is committed). */
export function interruptible(): { abort: AbortController; release: () => void } {
  const abort = new AbortController();
  const onSignal = () => abort.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return { abort, release: () => { process.off('SIGINT', onSignal); process.off('SIGTERM', onSignal); } };
}

/** The legacy `docker build` output on stdout (nothing with `-q`). */
export function legacyPrinter(quiet: boolean): (e: BuildEvent) => void {
  return (e) => {
    if (quiet) return;
    if (e.type === 'output') process.stdout.write(e.text);
    else process.stdout.write(renderLegacy(e));
  };
}
