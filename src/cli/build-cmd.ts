import path from 'node:path';
import { checkPlatform } from '../dockerfile/platform.js';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { SlipwayError } from '../errors.js';
import { build } from '../scheduler/build.js';
import { lowerDirsOf } from '../scheduler/build.js';
import { WorkerPool } from '../scheduler/pool.js';
import { renderLegacy, type BuildEvent } from '../scheduler/progress.js';
import { ensureStore, makeTmpDir, readImage, resolveImage, sweepTmp } from '../store/graph.js';
import { resolveUser } from '../snapshot/rootfs.js';
import { runInSandbox } from '../snapshot/sandbox.js';
import { SANDBOX_FLAGS, limitMessage, parseNetwork, sandboxFromFlags } from '../sandbox/limits.js';
import { detectStorageDriver } from '../snapshot/storage-driver.js';
import { containerEnv, envGet } from '../image-config.js';
import os from 'node:os';
import { writeFileAtomic } from '../fs.js';
import { parseReference } from '../store/reference.js';
import { RUN_VALUE_FLAGS } from './run-flags.js';
import { specialFileError, specialKind } from '../context/special-file.js';
import type { CommandEnv } from './commands.js';
import { parseBuildArgs } from './args.js';

/** The driver when none was asked for: overlay, or vfs (with a warning) where overlay cannot be mounted. */
async function detectedDriver(layout: CommandEnv['layout']): Promise<'overlay' | 'vfs'> {
  await ensureStore(layout);
  // The probe mounts a throwaway overlay: remember its answer per kernel and filesystem.
  const memo = path.join(layout.root, 'storage-driver.json');
  const dev = (await fs.stat(layout.graph)).dev;
  const known = await fs.readFile(memo, 'utf8').then((t) => JSON.parse(t) as { kernel: string; dev: number; driver: 'overlay' | 'vfs'; reason?: string }, () => undefined);
  if (known && known.kernel === os.release() && known.dev === dev) {
    if (known.driver === 'vfs') process.stderr.write(`WARNING: overlayfs cannot be mounted here (${known.reason ?? 'unknown'}); using --storage-driver vfs\n`);
    return known.driver;
  }
  const { driver, reason } = await detectStorageDriver(layout.tmp);
  await writeFileAtomic(memo, JSON.stringify({ kernel: os.release(), dev, driver, ...(reason ? { reason } : {}) }), 0o644, { fsync: false });
  if (driver === 'vfs') process.stderr.write(`WARNING: overlayfs cannot be mounted here (${reason}); using --storage-driver vfs\n`);
  return driver;
}

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

/** `slipway build`: legacy-format output, `-q` for the id only; exit status of a failing RUN passes through. */
export async function buildCommand(args: string[], { layout }: CommandEnv): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      tag: { type: 'string', short: 't', multiple: true },
      file: { type: 'string', short: 'f' },
      'build-arg': { type: 'string', multiple: true },
      target: { type: 'string' },
      platform: { type: 'string' },
      'no-cache': { type: 'boolean' },
      quiet: { type: 'boolean', short: 'q' },
      network: { type: 'string' },
      workers: { type: 'string' },
      'storage-driver': { type: 'string' },
      plan: { type: 'boolean' },
      rm: { type: 'boolean' },
      'force-rm': { type: 'boolean' },
      ...SANDBOX_FLAGS,
    },
    allowPositionals: true,
  });
  if (positionals.length !== 1) throw new SlipwayError('ERR_USAGE', '"slipway build" requires exactly 1 argument: PATH');
  const contextDir = positionals[0]!;
  const network = parseNetwork(values.network);
  if (values.platform !== undefined) checkPlatform(values.platform);
  const sandbox = sandboxFromFlags(values);
  const workers = values.workers !== undefined ? Number(values.workers) : undefined;
  if (workers !== undefined && (!Number.isInteger(workers) || workers < 1)) throw new SlipwayError('ERR_USAGE', '--workers must be a positive integer');
  // Bad tags are usage errors, found before anything touches the store (as docker's CLI does).
  for (const t of values.tag ?? []) parseReference(t);
  await checkDockerfile(contextDir, values.file);
  const driver = values['storage-driver'] ?? process.env['SLIPWAY_STORAGE_DRIVER'] ?? (await detectedDriver(layout));
  if (driver !== 'overlay' && driver !== 'vfs') throw new SlipwayError('ERR_USAGE', `unsupported --storage-driver ${driver}: overlay or vfs`);
  const pool = new WorkerPool(workers !== undefined ? { workers } : {});
  const quiet = values.quiet ?? false;
  const onEvent = (e: BuildEvent) => {
    if (quiet) return;
    if (e.type === 'output') process.stdout.write(e.text);
    else process.stdout.write(renderLegacy(e));
  };
  const abort = new AbortController();
  const onSignal = () => abort.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const file = values.file !== undefined ? path.relative(contextDir, path.resolve(values.file)) : undefined;
    const { id } = await build({
      layout, contextDir, ...(file !== undefined ? { dockerfile: file } : {}), tags: values.tag ?? [],
      buildArgs: parseBuildArgs(values['build-arg'] ?? []), ...(values.target !== undefined ? { target: values.target } : {}),
      noCache: values['no-cache'] ?? false, network, storageDriver: driver, pool, onEvent, signal: abort.signal, plan: values.plan ?? false,
      sandbox,
      // A local build is run by root on root's own machine: asking for the host network is allowed.
      allowHostNetwork: true,
      fetchBase: async (ref) => (await import('./registry-cmds.js')).pullForBuild(layout, ref, quiet),
    });
    if (quiet && !values.plan) process.stdout.write(`sha256:${id}\n`);
    return 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await pool.close();
  }
}

/** `slipway run`: the image's Entrypoint/Cmd in the sandbox over a throwaway upper layer. */
export async function runCommand(args: string[], { layout }: CommandEnv): Promise<number> {
  // Options end at the image name: what follows is the command, flags included.
  let split = args.length;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (!a.startsWith('-')) { split = i; break; }
    if (RUN_VALUE_FLAGS.has(a)) i++;
  }
  const { values, positionals: head } = parseArgs({
    args: args.slice(0, Math.min(split + 1, args.length)),
    options: {
      rm: { type: 'boolean' }, interactive: { type: 'boolean', short: 'i' }, tty: { type: 'boolean', short: 't' },
      env: { type: 'string', short: 'e', multiple: true }, user: { type: 'string', short: 'u' }, workdir: { type: 'string', short: 'w' },
      network: { type: 'string' },
      ...SANDBOX_FLAGS,
    },
    allowPositionals: true,
    strict: true,
  });
  const sandbox = sandboxFromFlags(values);
  const network = parseNetwork(values.network);
  const positionals = [...head, ...args.slice(split + 1)];
  if (positionals.length < 1) throw new SlipwayError('ERR_USAGE', '"slipway run" requires at least 1 argument');
  await ensureStore(layout);
  await sweepTmp(layout);
  const id = await resolveImage(layout, positionals[0]!);
  const json = await readImage(layout, id);
  const config = json.config;
  const cmd = positionals.length > 1 ? positionals.slice(1) : config.Cmd ?? [];
  const argv = [...(config.Entrypoint ?? []), ...cmd];
  if (argv.length === 0) throw new SlipwayError('ERR_USAGE', 'No command specified');
  const lowerDirs = await lowerDirsOf(layout, id);
  const ident = await resolveUser(lowerDirs, values.user ?? config.User ?? '');
  let env = [...(config.Env ?? [])];
  for (const e of values.env ?? []) env = [...env.filter((x) => x.split('=')[0] !== e.split('=')[0]), e.includes('=') ? e : `${e}=${process.env[e] ?? ''}`];
  // As docker run -t: a terminal type for programs that draw on the screen (the image's or -e's wins).
  if (values.tty && envGet(env, 'TERM') === undefined) env = ['TERM=xterm', ...env];
  const hostname = crypto.randomBytes(6).toString('hex');
  env = containerEnv(env, { hostname, home: ident.home });
  const dir = await makeTmpDir(layout, 'run');
  try {
    await fs.mkdir(path.join(dir, 'upper'));
    await fs.mkdir(path.join(dir, 'scratch'));
    const res = await runInSandbox({
      lowerDirs, upperDir: path.join(dir, 'upper'), scratchDir: path.join(dir, 'scratch'), argv, env,
      uid: ident.uid, gid: ident.gid, groups: ident.groups, cwd: values.workdir ?? (config.WorkingDir || '/'),
      hostname, network, sandbox,
      volumes: Object.keys(config.Volumes ?? {}),
      interactive: { tty: values.tty ?? false, stdin: values.interactive ?? false },
    });
    if (res.limits) process.stderr.write(`slipway: the container ran into its limits: ${limitMessage(res.limits, sandbox)}\n`);
    return res.exitCode;
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}
