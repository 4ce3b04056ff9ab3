/**
 * The host side of a step's sandbox. RUN steps and `slipway run` are containers under an OCI
 * runtime (`src/sandbox/container.ts`). COPY, ADD and WORKDIR need no container: the shim
 * mounts the overlay in a private mount namespace and this process writes into it through
 * /proc (`withMountedRootfs`), or, for a `COPY --from` that must mount more, a script runs as root
 * inside that namespace (`runInMountedRootfs`, `script-entry.ts`); either writes only through
 * paths resolved inside the rootfs. Guarantees: when these functions settle, nothing is
 * mounted or running any more, and `upperDir` holds only what the step changed; if this Node
 * process dies (even kill -9), the namespaces die with it.
 */
import { spawn } from 'node:child_process';
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SlipwayError, fromPlainError } from '../errors.js';
import { runContainer, type ContainerRun, type ContainerResult } from '../sandbox/container.js';
import { shimPath } from '../sandbox/runtime.js';
import { spawnViaSpawner } from '../sandbox/spawner.js';
import { SCRIPT_DIR_ENV, scratchLayout, type ScriptReply, type ScriptRequest } from './script-entry.js';

/** Where a step's rootfs comes from and where its changes go. */
export interface RootfsSpec {
  /** Layer dirs in overlay form (0/0 char-device whiteouts, opaque xattr), top-most first; may be empty. */
  lowerDirs: string[];
  /** Empty dir that receives the step's changes: it becomes the new layer. */
  upperDir: string;
  /** Private empty dir on the same filesystem as upperDir; the caller deletes it afterwards. */
  scratchDir: string;
  /**
   * vfs driver: a plain directory holding the whole rootfs, used (bind-mounted) in place of the
   * overlay of lowerDirs + upperDir, which are then ignored; changes land in it and the caller
   * finds them by walking. For RUN it needs the mount points `prepareMountPoints` makes.
   */
  rootDir?: string;
}

/** One command to run in the sandbox. */
export type RunSpec = ContainerRun;

/** Runs a RUN step or `slipway run` container; see `runContainer`. */
export function runInSandbox(spec: RunSpec): Promise<ContainerResult> {
  return runContainer(spec);
}

const SCRIPT_ENTRY = fileURLToPath(new URL('./script-entry.js', import.meta.url));
const HOST_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';


/** Listens on `<scratch>/c.sock` through /proc/self/fd, which keeps the path under 108 bytes. */
async function listenControl(scratchDir: string, socketName: string): Promise<net.Server> {
  const dirFd = fs.openSync(scratchDir, 'r');
  try {
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(`/proc/self/fd/${dirFd}/${socketName}`, () => resolve());
    });
    return server;
  } finally {
    fs.closeSync(dirFd);
  }
}

/** Hands the entry its request over the control socket and collects its one reply line. */
function serveRequest(server: net.Server, req: ScriptRequest): { reply: () => ScriptReply | undefined; closed: () => Promise<void>; destroy: () => void } {
  let conn: net.Socket | undefined;
  let reply: ScriptReply | undefined;
  let closed: Promise<void> = Promise.resolve();
  server.once('connection', (c) => {
    conn = c;
    server.close(); // exactly one entry talks to us
    closed = new Promise((resolve) => c.once('close', () => resolve()));
    c.on('error', () => undefined);
    let buf = '';
    c.setEncoding('utf8');
    c.on('data', (chunk: string) => {
      buf += chunk;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        reply = JSON.parse(buf.slice(0, nl)) as ScriptReply;
        buf = buf.slice(nl + 1);
      }
    });
    c.write(`${JSON.stringify(req)}\n`);
  });
  return { reply: () => reply, closed: () => closed, destroy: () => conn?.destroy() };
}

/** The shim's arguments that mount the rootfs (overlay, or the vfs dir) for a script. */
function mountArgs(spec: RootfsSpec, layout: ReturnType<typeof scratchLayout>): string[] {
  if (spec.rootDir !== undefined) return ['--rootdir', path.resolve(spec.rootDir), '--merged', layout.merged];
  let lowers = spec.lowerDirs.map((d) => path.resolve(d));
  if (lowers.length === 0) {
    fs.mkdirSync(layout.empty, { recursive: true });
    lowers = [layout.empty];
  }
  // The merged root takes its attributes from the upper dir: make it look like the image's.
  const root = spec.lowerDirs[0] === undefined ? undefined : fs.statSync(spec.lowerDirs[0]);
  fs.chmodSync(spec.upperDir, root ? root.mode & 0o7777 : 0o755);
  fs.chownSync(spec.upperDir, root?.uid ?? 0, root?.gid ?? 0);
  return [...lowers.flatMap((l) => ['--lower', l]), '--upper', path.resolve(spec.upperDir), '--work', layout.work, '--links', layout.links, '--merged', layout.merged];
}

/**
 * Mounts the overlay in a private mount namespace (no chroot: host paths such as the build
 * context stay visible) and runs `default(mergedDir, args)` of the compiled ESM module
 * `scriptModule` in a Node process there. What it writes under mergedDir lands in upperDir.
 * Resolves with its (JSON) result; if it throws, rejects with an error of the same message and
 * `code` (a SlipwayError when the code is one of ours).
 */
export async function runInMountedRootfs<R>(spec: RootfsSpec & { signal?: AbortSignal }, scriptModule: string, args: unknown): Promise<R> {
  if (spec.signal?.aborted) throw new SlipwayError('ERR_CANCELLED', 'build step cancelled');
  const scratch = path.resolve(spec.scratchDir);
  const layout = scratchLayout(scratch);
  for (const d of [layout.links, layout.work, layout.merged]) fs.mkdirSync(d, { recursive: true });
  const server = await listenControl(spec.scratchDir, layout.socketName);
  const channel = serveRequest(server, { scriptModule: path.resolve(scriptModule), args });
  const argv = [...mountArgs(spec, layout), '--status-fd', '3', '--', process.execPath, '--no-warnings', SCRIPT_ENTRY];
  // Only the scratch dir travels in the env; the request goes over the socket.
  const child = spawn(shimPath(), argv, { stdio: ['ignore', 'pipe', 'pipe', 'pipe'], env: { PATH: HOST_PATH, [SCRIPT_DIR_ENV]: scratch } });
  let tail = '';
  const collect = (b: Buffer) => { tail = (tail + b.toString('utf8')).slice(-2000); };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  let shimPid: number | undefined; // pid 1 of the shim's namespace: killing it ends everything
  (child.stdio[3] as NodeJS.ReadableStream).on('data', (b: Buffer) => {
    collect(b);
    const m = /^pid (\d+)$/m.exec(b.toString());
    if (m) shimPid = Number(m[1]);
  });
  const onAbort = () => {
    try { process.kill(shimPid ?? child.pid ?? 0, 'SIGKILL'); } catch { /* gone */ }
  };
  spec.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await new Promise<void>((resolve) => {
      child.once('error', () => resolve());
      child.once('close', () => resolve());
    });
    await channel.closed();
  } finally {
    spec.signal?.removeEventListener('abort', onAbort);
    server.close();
    channel.destroy();
    fs.rmSync(layout.socket, { force: true });
    // Overlay leaves work/work (mode 000) behind; the namespace is gone, nothing is mounted.
    fs.rmSync(layout.work, { recursive: true, force: true });
  }
  if (spec.signal?.aborted) throw new SlipwayError('ERR_CANCELLED', 'build step cancelled');
  const reply = channel.reply();
  if (reply?.type === 'result') return reply.value as R;
  if (reply?.type === 'error') throw fromPlainError(reply.error);
  throw new SlipwayError('ERR_SANDBOX', `sandbox exited (${child.exitCode ?? child.signalCode}) without a result: ${tail.trim()}`);
}

/**
 * Mounts the rootfs as `runInMountedRootfs` does, but runs `fn` in this process (no Node
 * process to start per step): the shim, started through this thread's spawner (so Node never
 * forks itself here), mounts everything, says "mounted" and holds the mount namespace
 * (`--hold-mounts`); `fn` gets the merged dir as seen through /proc/<pid 1 of the shim>/root.
 * `fn` must resolve every path inside that dir (`resolveInRoot`): an absolute symlink followed
 * by the kernel would lead to this process's root. Then pid 1 is killed, and when this settles
 * the shim is gone and nothing is mounted; if this process dies (even kill -9), the spawner
 * dies, the shim's stdin closes and the shim goes too.
 */
export async function withMountedRootfs<R>(spec: RootfsSpec & { signal?: AbortSignal }, fn: (merged: string) => Promise<R>): Promise<R> {
  if (spec.signal?.aborted) throw new SlipwayError('ERR_CANCELLED', 'build step cancelled');
  const layout = scratchLayout(path.resolve(spec.scratchDir));
  for (const d of [layout.links, layout.work, layout.merged]) fs.mkdirSync(d, { recursive: true });
  let tail = '';
  const collect = (b: Buffer) => { tail = (tail + b.toString('utf8')).slice(-2000); };
  let status = '';
  let pid1: number | undefined;
  let gone = false;
  // Up once pid 1 has said "mounted" and the shim has said which pid that is; down if the shim exits first.
  let settle: (up: boolean) => void = () => undefined;
  const up = new Promise<boolean>((resolve) => { settle = resolve; });
  const proc = await spawnViaSpawner([shimPath(), ...mountArgs(spec, layout), '--hold-mounts', '--status-fd', '3'], {
    holdStdin: true, onStdout: collect, onStderr: collect,
    onFd3: (b) => {
      status += b.toString('utf8');
      pid1 ??= Number(/^pid (\d+)$/m.exec(status)?.[1]) || undefined;
      if (pid1 !== undefined && /^mounted$/m.test(status)) settle(true);
    },
  });
  void proc.exited.then(() => {
    gone = true;
    settle(false);
  });
  // Killing pid 1 ends the namespace; the shim reaps it, then exits, so `exited` means unmounted.
  // (Once the shim has exited, pid 1 is long reaped: nothing is signalled then.)
  // Before pid 1 is known, the shim itself is killed, and pid 1 follows it (parent-death signal).
  const stop = () => {
    if (gone) return;
    if (pid1 === undefined) return proc.kill('SIGKILL');
    try { process.kill(pid1, 'SIGKILL'); } catch { /* gone */ }
  };
  spec.signal?.addEventListener('abort', stop, { once: true });
  try {
    if (!(await up)) {
      const why = /^error (.*)$/m.exec(status)?.[1] ?? tail.trim();
      throw new SlipwayError('ERR_SANDBOX', `sandbox setup failed: ${why}`);
    }
    return await fn(`/proc/${pid1}/root${layout.merged}`);
  } catch (e) {
    if (spec.signal?.aborted) throw new SlipwayError('ERR_CANCELLED', 'build step cancelled');
    throw e;
  } finally {
    spec.signal?.removeEventListener('abort', stop);
    stop();
    await proc.exited;
    // Overlay leaves work/work (mode 000) behind; the namespace is gone, nothing is mounted.
    fs.rmSync(layout.work, { recursive: true, force: true });
  }
}
