import path from 'node:path';
import fs from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { SlipwayError } from '../errors.js';
import { WorkerPool } from '../scheduler/pool.js';
import { buildThroughEngine, runningEngine } from './engine-client.js';
import { progressFor } from './build-progress.js';
import { renderLegacy, type BuildEvent } from '../scheduler/progress.js';
import { makeTmpDir } from '../store/graph.js';
import { SANDBOX_FLAGS, parseNetwork, sandboxFromFlags } from '../sandbox/limits.js';
import { sessionInputs } from './session-flags.js';
import { writeFileAtomic } from '../fs.js';
import { parseReference } from '../store/reference.js';
import { specialFileError, specialKind } from '../context/special-file.js';
import type { CommandEnv } from './command-env.js';
import { parseBuildArgs } from './args.js';
import { BUILD_EXTRA_FLAGS, buildExtras } from './build-flags.js';
import type { BuildInput } from './build-input.js';
import type { SandboxOptions } from '../sandbox/container.js';
import type { RemoteCache } from '../scheduler/remote-cache.js';

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

/** Every option of `slipway build`. */
const BUILD_OPTIONS = {
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

/** `--label`s go in as LABEL steps at the end of the built stage, in a copy of the Dockerfile outside the context. */
async function labelledDockerfile(layout: CommandEnv['layout'], input: BuildInput, labels: Record<string, string>, target: string | undefined): Promise<string | undefined> {
  const original = path.resolve(input.contextDir, input.file ?? 'Dockerfile');
  if (Object.keys(labels).length === 0) return input.file;
  const text = await fs.readFile(original, 'utf8').catch(() => undefined);
  const { dockerfileWithLabels } = await import('../api/build-context.js');
  if (text === undefined) return input.file; // the build says the Dockerfile is missing
  const dir = await makeTmpDir(layout, 'labels');
  const copy = path.join(dir, path.basename(original));
  await fs.writeFile(copy, dockerfileWithLabels(text, labels, target));
  const previous = input.cleanup;
  input.cleanup = async () => { await fs.rm(dir, { recursive: true, force: true }); await previous(); };
  return copy;
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

/** SIGINT and SIGTERM cancel the build (running steps are killed, nothing after them is committed). */
function interruptible(): { abort: AbortController; release: () => void } {
  const abort = new AbortController();
  const onSignal = () => abort.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return { abort, release: () => { process.off('SIGINT', onSignal); process.off('SIGTERM', onSignal); } };
}

/** The legacy `docker build` output on stdout (nothing with `-q`). */
function legacyPrinter(quiet: boolean): (e: BuildEvent) => void {
  return (e) => {
    if (quiet) return;
    if (e.type === 'output') process.stdout.write(e.text);
    else process.stdout.write(renderLegacy(e));
  };
}

/**
 * The build's storage driver: `--storage-driver`, `SLIPWAY_STORAGE_DRIVER`, or the probe's choice
 * (overlay, or vfs with a warning where overlay cannot be mounted), which `remember` keeps in the
 * store once the build has succeeded.
 */
async function storageDriverFor(layout: CommandEnv['layout'], flag: string | undefined): Promise<{ driver: 'overlay' | 'vfs'; remember(): Promise<void> }> {
  const asked = flag ?? process.env['SLIPWAY_STORAGE_DRIVER'];
  if (asked === undefined) return (await import('../snapshot/storage-driver.js')).memoizedStorageDriver(layout, (l) => process.stderr.write(`${l}\n`));
  if (asked !== 'overlay' && asked !== 'vfs') throw new SlipwayError('ERR_USAGE', `unsupported --storage-driver ${asked}: overlay or vfs`);
  return { driver: asked, remember: async () => undefined };
}

/** `slipway build`: legacy-format output, `-q` for the id only; exit status of a failing RUN passes through. */
export async function buildCommand(args: string[], { layout }: CommandEnv): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: BUILD_OPTIONS, allowPositionals: true });
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
  const [{ build }, { buildInput }] = await Promise.all([import('../scheduler/build.js'), import('./build-input.js')]);
  // The exporters (a rootfs merge and a tar writer) load only when --output asks for them.
  const exporter = extras.outputs.length > 0 ? await import('./build-output.js') : undefined;
  await exporter?.checkOutputs(extras.outputs);
  const { driver, remember } = await storageDriverFor(layout, values['storage-driver']);
  const input = await buildInput(layout, positionals[0]!, values.file);
  const session = await sessionInputs(values); // last of the checks: it may start ssh-agents
  const pool = new WorkerPool(workers !== undefined ? { workers } : {});
  const quiet = values.quiet ?? false;
  const progress = await progressFor(values);
  const onEvent = progress.sinks.onEvent;
  const { abort, release } = interruptible();
  try {
    const contextDir = input.contextDir;
    const chosen = await labelledDockerfile(layout, input, extras.labels, values.target);
    const file = chosen !== undefined ? path.relative(contextDir, path.resolve(chosen)) : undefined;
    const cacheFrom = extras.cacheFrom.length > 0 ? await cacheFromFor(layout, extras.cacheFrom, (text) => onEvent({ type: 'warning', text })) : undefined;
    const { id } = await build({
      layout, contextDir, ...(file !== undefined ? { dockerfile: file } : {}), tags: values.tag ?? [],
      buildArgs: parseBuildArgs(values['build-arg'] ?? []), ...(values.target !== undefined ? { target: values.target } : {}),
      noCache: values['no-cache'] ?? false, network, storageDriver: driver, executor: pool, ...progress.sinks, signal: abort.signal, plan: values.plan ?? false,
      sandbox, pull: extras.pull, ...(cacheFrom ? { remote: cacheFrom } : {}), ...(input.throwaway ? { persistStatCache: false } : {}), ...session.build,
      // A local build is run by root on root's own machine: asking for the host network is allowed.
      allowHostNetwork: true,
      fetchBase: async (ref) => (await import('./registry-cmds.js')).pullForBuild(layout, ref, quiet),
    }).catch((e: unknown) => { progress.end(e); throw e; });
    progress.end();
    await remember();
    if (values.plan) return 0;
    await exporter?.writeOutputs(layout, id, extras.outputs);
    // As docker: the id, without a newline, written once the build succeeded.
    if (extras.iidfile !== undefined) await writeFileAtomic(extras.iidfile, `sha256:${id}`, 0o644, { fsync: false });
    if (quiet) process.stdout.write(`sha256:${id}\n`);
    return 0;
  } finally {
    release();
    await pool.close();
    await input.cleanup();
    await session.close();
  }
}

/** The `--cache-from` cache: local images, or registry references read lazily. */
async function cacheFromFor(layout: CommandEnv['layout'], names: string[], warn: (text: string) => void): Promise<RemoteCache> {
  const [{ CacheFrom }, { loadCacheSources }, reg] = await Promise.all([import('../registry/cache-from.js'), import('../registry/cache-from-registry.js'), import('./registry-cmds.js')]);
  return new CacheFrom(layout, () => loadCacheSources(layout, names, reg.registryAccess(), warn));
}
