/**
 * The builders build-bench measures: Slipway (this CLI, or a baseline one) with a fresh `--root`
 * per entry, Docker's legacy builder and BuildKit on a private dockerd, and buildah with private
 * storage. Each can drop an entry's cache untimed and run one timed build.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { live, must, run, sleep, stopChild, tail, type RunResult } from './child-run.js';

/**
 * Slipway itself standalone and through its resident engine (`-engine`), an older Slipway CLI
 * measured the same way (`--baseline-cli`), main's CLI (`--main-cli`), and the peers.
 */
export type BuilderName = 'slipway' | 'slipway-engine' | 'slipway-before' | 'slipway-main' | 'slipway-main-engine' | 'docker-legacy' | 'buildkit' | 'buildah';

export interface Entry { name: string; dir: string; touched?: string; original?: Buffer }
export interface Builder {
  name: BuilderName;
  /** Untimed: drop this entry's cache (the base image stays). */
  reset(e: Entry): Promise<void>;
  /** The timed build; `cold` adds --no-cache for the peers (Slipway's reset already gives it an empty store). */
  build(e: Entry, cold: boolean): Promise<RunResult>;
  /** Untimed: frees what the entry left behind. */
  finish(e: Entry): Promise<void>;
}

export interface Ctx { work: string; baseTar: string }

const tagOf = (e: Entry, b: BuilderName) => `bench-${e.name}:${b}`;

/**
 * `name` runs the CLI at `cliPath` with its own fresh `--root` per entry, holding only the
 * imported base. Standalone: each build is one `slipway build` process (SLIPWAY_ENGINE=off).
 */
export function slipwayBuilder(ctx: Ctx, name: 'slipway' | 'slipway-before' | 'slipway-main', cliPath: string): Builder {
  const rootOf = (e: Entry) => path.join(ctx.work, name, e.name);
  const cli = (e: Entry, ...args: string[]) => [cliPath, '--root', rootOf(e), ...args];
  return {
    name,
    async reset(e) {
      await fsp.rm(rootOf(e), { recursive: true, force: true });
      await must(process.execPath, cli(e, 'import', '--change', 'CMD ["sh"]', ctx.baseTar, 'busybox:latest'));
    },
    build: (e) => run(process.execPath, cli(e, 'build', '-t', tagOf(e, name), e.dir), { env: { SLIPWAY_ENGINE: 'off' } }),
    finish: (e) => fsp.rm(rootOf(e), { recursive: true, force: true }),
  };
}

/**
 * The same CLI through its resident engine: `slipway serve` on the entry's root (its default
 * socket, `<root>/slipway.sock`), started untimed by `reset`; each timed build is the
 * `slipway build` client process, which hands the build to the engine. That process is the
 * native front (`dist/native/slipway`, beside the CLI's `dist/src`, the fastest `slipway` a
 * user can install) in a tree that has one, else the Node.js CLI. The front finds `node` (for what it
 * hands over) on PATH: this bench's own Node.js first.
 */
export function slipwayEngineBuilder(ctx: Ctx, name: 'slipway-engine' | 'slipway-main-engine', cliPath: string): Builder {
  const rootOf = (e: Entry) => path.join(ctx.work, name, e.name);
  const cli = (e: Entry, ...args: string[]) => [cliPath, '--root', rootOf(e), ...args];
  const front = path.join(path.dirname(cliPath), '..', '..', 'native', 'slipway');
  const client = fs.existsSync(front) ? front : undefined;
  const env = { PATH: `${path.dirname(process.execPath)}:${process.env['PATH'] ?? ''}` };
  let engine: ChildProcess | undefined;
  const stop = async () => {
    if (engine) await stopChild(engine, 'SIGTERM', 15_000);
    engine = undefined;
  };
  return {
    name,
    async reset(e) {
      await stop();
      await fsp.rm(rootOf(e), { recursive: true, force: true });
      await must(process.execPath, cli(e, 'import', '--change', 'CMD ["sh"]', ctx.baseTar, 'busybox:latest'));
      engine = await startEngine(cli(e, 'serve'));
    },
    async build(e) {
      if (!engine || engine.exitCode !== null) throw new Error(`${name}: the engine for ${e.name} is not running`);
      const args = cli(e, 'build', '-t', tagOf(e, name), e.dir);
      return client ? run(client, args.slice(1), { env }) : run(process.execPath, args);
    },
    async finish(e) {
      await stop();
      await fsp.rm(rootOf(e), { recursive: true, force: true });
    },
  };
}

/** `slipway serve`, once it says it is listening (its stdout), tracked in `live`. */
async function startEngine(args: string[]): Promise<ChildProcess> {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  live.add(child);
  child.on('exit', () => live.delete(child));
  let out = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start in 30 s:\n${tail(out, 20)}`)), 30_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      if (out.includes('listening on')) { clearTimeout(timer); resolve(); }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`serve exited (${code}):\n${tail(out, 20)}`)); });
  });
  // Its output is not read any more: drained so that the engine never blocks on a full pipe.
  child.stdout!.resume();
  child.stderr!.resume();
  return child;
}

export interface Dockerd { child: ChildProcess; env: NodeJS.ProcessEnv; cli: string }

/** A private dockerd (bridge none, no iptables) whose every path lives under `dir`. */
export async function startDockerd(dir: string, cli: string): Promise<Dockerd> {
  await fsp.mkdir(path.join(dir, 'config'), { recursive: true });
  const log = fs.openSync(path.join(dir, 'dockerd.log'), 'a');
  const sock = path.join(dir, 'docker.sock');
  const child = spawn('dockerd', ['--bridge=none', '--iptables=false', '--data-root', path.join(dir, 'data'),
    '--exec-root', path.join(dir, 'exec'), '--pidfile', path.join(dir, 'docker.pid'), '-H', `unix://${sock}`],
  { stdio: ['ignore', log, log], detached: true });
  fs.closeSync(log);
  live.add(child);
  child.on('exit', () => live.delete(child));
  const d: Dockerd = { child, cli, env: { DOCKER_HOST: `unix://${sock}`, DOCKER_CONFIG: path.join(dir, 'config') } };
  for (let i = 0; i < 120; i++) {
    if (child.exitCode !== null) break;
    if ((await run(cli, ['version'], { env: d.env })).code === 0) return d;
    await sleep(250);
  }
  const logText = fs.readFileSync(path.join(dir, 'dockerd.log'), 'utf8');
  await stopChild(child, 'SIGTERM', 10_000);
  throw new Error(`dockerd did not come up:\n${tail(logText, 20)}`);
}

export function dockerBuilder(d: Dockerd, name: 'docker-legacy' | 'buildkit'): Builder {
  const docker = (args: string[], env: NodeJS.ProcessEnv = {}) => run(d.cli, args, { env: { ...d.env, ...env } });
  const drop = async (e: Entry) => {
    await docker(['rmi', '-f', tagOf(e, name)]);
    await docker(['image', 'prune', '-f']);
    await docker(['builder', 'prune', '-af']); // BuildKit's cache, context transfers included
  };
  return {
    name,
    reset: drop,
    build: (e, cold) => docker(['build', ...(cold ? ['--no-cache'] : []),
      // dockerd runs with --bridge=none: BuildKit's RUN needs no network; legacy uses the default
      ...(name === 'buildkit' ? ['--network=none', '--progress=plain'] : []), '-t', tagOf(e, name), e.dir],
    { DOCKER_BUILDKIT: name === 'buildkit' ? '1' : '0' }),
    finish: drop,
  };
}

/**
 * buildah with private storage under `dir`; the base is the rootfs tar added to `scratch`.
 * `cleanup` removes its working containers and mounts (it runs even after an interrupt).
 */
export async function buildahBuilder(dir: string, baseTar: string): Promise<{ builder: Builder; cleanup: () => Promise<void> }> {
  const bh = (args: string[], cleanup = false) => run('buildah', ['--root', path.join(dir, 'root'), '--runroot', path.join(dir, 'run'),
    '--storage-driver', 'overlay', ...args], { cleanup });
  const ok = async (args: string[]) => {
    const r = await bh(args);
    if (r.code !== 0) throw new Error(`buildah ${args.join(' ')}: exit ${r.code}\n${tail(r.output, 20)}`);
    return r.output.trim();
  };
  const ctr = (await ok(['from', '--quiet', 'scratch'])).split('\n').pop()!;
  await ok(['add', '--quiet', ctr, baseTar, '/']); // a local tar is extracted, as in ADD
  await ok(['config', '--cmd', '["sh"]', ctr]);
  await ok(['commit', '--quiet', ctr, 'docker.io/library/busybox:latest']);
  await ok(['rm', ctr]);
  const drop = async (e: Entry) => {
    await bh(['rmi', '-f', tagOf(e, 'buildah')]);
    await bh(['rmi', '--prune']);
  };
  const cleanup = async () => {
    await bh(['rm', '--all'], true);
    await bh(['umount', '--all'], true);
  };
  const builder: Builder = {
    name: 'buildah',
    reset: drop,
    build: (e, cold) => bh(['bud', '--layers', '--isolation', 'chroot', '--pull=never', ...(cold ? ['--no-cache'] : []),
      '-t', tagOf(e, 'buildah'), e.dir]),
    finish: drop,
  };
  return { builder, cleanup };
}
