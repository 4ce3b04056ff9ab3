import path from 'node:path';
import fs from 'node:fs/promises';
import { SlipwayError } from '../errors.js';
import { buildThroughEngine, runningEngine } from './engine-client.js';
import { parseNetwork, sandboxFromFlags } from '../sandbox/limits.js';
import { parseReference } from '../store/reference.js';
import { specialFileError, specialKind } from '../context/special-file.js';
import type { CommandEnv } from './command-env.js';
import { parseBuildArgs } from './args.js';
import { buildExtras } from './build-flags.js';
import { interruptible, legacyPrinter, parseBuildOptions } from './build-common.js';
import type { SandboxOptions } from '../sandbox/container.js';

/**
 * A Dockerfile that is a named pipe, socket or device inside the context would block the
 * build forever (or worse): refused. A pipe given with -f from outside the context
 * (`-f <(generate)`) is what the user meant, and is read.
 */
async function checkDockerfile(contextDir: string, file: string | undefined): Promise<void> {
  const abs = path.resolve(file ?? path.join(contextDir, 'Dockerfile'));
  const st = await fs.stat(abs).catch(() => undefined);
  const kind = st ? specialKind(st) : undefined;
  if (!kind) return;
  const inside = !path.relative(path.resolve(contextDir), abs).startsWith('..');
  if (inside || kind !== 'a named pipe') throw specialFileError(file ?? 'Dockerfile', kind);
}

/** The options the resident engine takes; any other one (--plan, --output, sandbox limits, …) builds in-process. */
const ENGINE_OPTIONS = new Set(['tag', 'file', 'build-arg', 'target', 'no-cache', 'quiet', 'rm', 'force-rm']);

/** The running engine to hand this build to (see engine-client.ts), unless an option needs an engine of its own. */
async function engineFor(values: Record<string, unknown>, layout: CommandEnv['layout']): Promise<string | undefined> {
  if (Object.keys(values).some((k) => !ENGINE_OPTIONS.has(k) && values[k] !== undefined)) return undefined;
  return runningEngine(layout);
}

/** `slipway build` through the resident engine: the same request, the same output, the engine's warm process. */
async function buildInEngine(sock: string, values: { tag?: string[]; file?: string; 'build-arg'?: string[]; target?: string; 'no-cache'?: boolean; quiet?: boolean }, contextDir: string): Promise<number> {
  const { abort, release } = interruptible();
  try {
    const dir = path.resolve(contextDir);
    const { id } = await buildThroughEngine(sock, {
      contextDir: dir, ...(values.file !== undefined ? { dockerfile: path.relative(dir, path.resolve(values.file)) } : {}), tags: values.tag ?? [],
      buildArgs: parseBuildArgs(values['build-arg'] ?? []), ...(values.target !== undefined ? { target: values.target } : {}), noCache: values['no-cache'] ?? false,
    }, legacyPrinter(values.quiet ?? false), abort.signal);
    if (values.quiet) process.stdout.write(`sha256:${id}\n`);
    return 0;
  } finally {
    release();
  }
}

/** `slipway build`: legacy-format output, `-q` for the id only; exit status of a failing RUN passes through. */
export async function buildCommand(args: string[], { layout }: CommandEnv): Promise<number> {
  const { values, positionals } = parseBuildOptions(args);
  if (positionals.length !== 1) throw new SlipwayError('ERR_USAGE', '"slipway build" requires exactly 1 argument: PATH | -');
  const network = parseNetwork(values.network);
  const extras = buildExtras(values);
  const sandbox: SandboxOptions = {
    ...sandboxFromFlags(values), extraHosts: extras.extraHosts, ulimits: extras.ulimits, ...(extras.shmSize !== undefined ? { shmSize: extras.shmSize } : {}),
  };
  const workers = values.workers !== undefined ? Number(values.workers) : undefined;
  if (workers !== undefined && (!Number.isInteger(workers) || workers < 1)) throw new SlipwayError('ERR_USAGE', '--workers must be a positive integer');
  // Bad tags are usage errors, found before anything touches the store (as docker's CLI does).
  for (const t of values.tag ?? []) parseReference(t);
  if (positionals[0] !== '-' && values.file !== '-') await checkDockerfile(positionals[0]!, values.file);
  const engine = positionals[0] !== '-' && values.file !== '-' ? await engineFor(values, layout) : undefined;
  if (engine) return buildInEngine(engine, values, positionals[0]!);
  // The engine's own modules load only for an in-process build: a client of the resident engine skips them.
  return (await import('./build-local.js')).buildInProcess(layout, values, positionals[0]!, { network, sandbox, extras, workers });
}

