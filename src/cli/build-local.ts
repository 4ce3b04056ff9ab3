/**
 * `slipway build` in this process, when no resident engine takes it: the engine's modules (the
 * scheduler, the worker pool, the session inputs) are loaded only here, so a build handed to a
 * running engine never loads them.
 */
import path from 'node:path';
import fs from 'node:fs/promises';
import { SlipwayError } from '../errors.js';
import { WorkerPool } from '../scheduler/pool.js';
import { progressFor } from './build-progress.js';
import { makeTmpDir } from '../store/graph.js';
import { sessionInputs } from './session-flags.js';
import { writeFileAtomic } from '../fs.js';
import type { CommandEnv } from './command-env.js';
import { parseBuildArgs } from './args.js';
import type { BuildExtras } from './build-flags.js';
import type { BuildInput } from './build-input.js';
import type { NetworkMode } from '../sandbox/oci-spec.js';
import type { SandboxOptions } from '../sandbox/container.js';
import type { RemoteCache } from '../scheduler/remote-cache.js';
import { interruptible, type BuildValues } from './build-common.js';

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

/** What build-cmd.ts made of the flags before handing the build here. */
export interface LocalPlan { network: NetworkMode | undefined; sandbox: SandboxOptions; extras: BuildExtras; workers: number | undefined }

/** The build, with its own worker pool; the exit status of a failing RUN passes through as an error. */
export async function buildInProcess(layout: CommandEnv['layout'], values: BuildValues, context: string, { network, sandbox, extras, workers }: LocalPlan): Promise<number> {
  const [{ build }, { buildInput }] = await Promise.all([import('../scheduler/build.js'), import('./build-input.js')]);
  // The exporters (a rootfs merge and a tar writer) load only when --output asks for them.
  const exporter = extras.outputs.length > 0 ? await import('./build-output.js') : undefined;
  await exporter?.checkOutputs(extras.outputs);
  const { driver, remember } = await storageDriverFor(layout, values['storage-driver']);
  const input = await buildInput(layout, context, values.file);
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
