/**
 * The host side of the sandbox: runs one build step (or an interactive container) in a root
 * filesystem made of read-only layer dirs plus a fresh writable upper dir, in its own mount,
 * pid, ipc and uts namespaces (and network namespace with `network: 'none'`). The work inside
 * the namespaces is done by `ns-entry.ts`. Guarantees: when these functions settle, nothing is
 * mounted or running any more, and `upperDir` holds only what the step changed; if this Node
 * process dies (even kill -9), the namespaces die with it.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { SlipwayError, type ErrorCode } from '../errors.js';
import { NS_DIR_ENV, scratchLayout, type NsErrorData, type NsReply, type NsRequest } from './ns-entry.js';

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
   * finds them by walking. For runInSandbox it needs the mount points `prepareMountPoints` makes.
   */
  rootDir?: string;
}

/** One command to run in the sandbox. */
export interface RunSpec extends RootfsSpec {
  argv: string[];
  env: string[];
  uid: number;
  gid: number;
  groups?: number[];
  /** Inside the rootfs; created (root, 0755) if missing, like WORKDIR. */
  cwd: string;
  hostname?: string;
  network: 'host' | 'none';
  /** Image VOLUME paths: the mount point lands in upperDir, what the command writes there does not. */
  volumes?: string[];
  /** 'inherit' for `slipway run -i -t`. */
  stdio?: 'pipe' | 'inherit';
  onOutput?: (chunk: Buffer, stream: 'stdout' | 'stderr') => void;
  signal?: AbortSignal;
  timeoutMs?: number;
}

const NS_ENTRY = fileURLToPath(new URL('./ns-entry.js', import.meta.url));
const HOST_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

// Typed as a full record so that a code added to errors.ts fails to compile here until listed.
const ERROR_CODES: Record<ErrorCode, true> = {
  ERR_DOCKERFILE_SYNTAX: true, ERR_DOCKERFILE_NO_STAGE: true, ERR_UNKNOWN_STAGE: true,
  ERR_BAD_SUBSTITUTION: true, ERR_CONTEXT_PATH: true, ERR_FILE_NOT_FOUND: true, ERR_COPY_DEST: true,
  ERR_NO_SUCH_USER: true, ERR_STEP_FAILED: true, ERR_IMAGE_NOT_FOUND: true,
  ERR_AMBIGUOUS_REFERENCE: true, ERR_INVALID_REFERENCE: true, ERR_IMAGE_CONFLICT: true,
  ERR_BAD_ARCHIVE: true, ERR_REGISTRY: true, ERR_UNAUTHORIZED: true, ERR_USAGE: true, ERR_SANDBOX: true, ERR_CANCELLED: true, ERR_INTERNAL: true,
};

/**
 * Runs `argv` chrooted into the overlay of `lowerDirs` + `upperDir` (or into `rootDir`), as uid/gid in cwd with
 * exactly `env`. Resolves with the command's status (a command killed by a signal reports
 * 128+n). A command that cannot be found exits 127 with Docker's message on stderr. Rejects with
 * ERR_SANDBOX when the sandbox cannot be set up, ERR_CANCELLED on abort and ERR_STEP_FAILED on
 * timeout; in every case the whole pid namespace is dead when it settles.
 */
export async function runInSandbox(spec: RunSpec): Promise<{ exitCode: number; signal: string | null }> {
  if (spec.argv.length === 0) throw new SlipwayError('ERR_SANDBOX', 'no command to run');
  if (!spec.cwd.startsWith('/')) throw new SlipwayError('ERR_SANDBOX', `working directory must be absolute: ${spec.cwd}`);
  const req: NsRequest = {
    mode: 'run',
    rootfs: absoluteRootfs(spec),
    argv: spec.argv,
    env: spec.env,
    uid: spec.uid,
    gid: spec.gid,
    groups: spec.groups ?? [],
    cwd: spec.cwd,
    hostname: spec.hostname ?? crypto.randomBytes(6).toString('hex'),
    network: spec.network,
    volumes: spec.volumes ?? [],
  };
  const namespaces = ['--mount', '--pid', '--ipc', '--uts', ...(spec.network === 'none' ? ['--net'] : [])];
  const reply = await runNsEntry({ req, namespaces, ...pick(spec) });
  if (reply.type === 'exit') return { exitCode: reply.exitCode, signal: reply.signal };
  throw replyError(reply);
}

/**
 * Mounts the overlay in a private mount namespace (no chroot: host paths such as the build
 * context stay visible) and runs `default(mergedDir, args)` of the compiled ESM module
 * `scriptModule` in a Node process there. What it writes under mergedDir lands in upperDir.
 * Resolves with its (JSON) result; if it throws, rejects with an error of the same message and
 * `code` (a SlipwayError when the code is one of ours).
 */
export async function runInMountedRootfs<R>(
  spec: RootfsSpec & { signal?: AbortSignal },
  scriptModule: string,
  args: unknown,
): Promise<R> {
  const req: NsRequest = { mode: 'script', rootfs: absoluteRootfs(spec), scriptModule: path.resolve(scriptModule), args };
  const opts: RunOptions = { req, namespaces: ['--mount', '--pid'] };
  if (spec.signal) opts.signal = spec.signal;
  const reply = await runNsEntry(opts);
  if (reply.type === 'result') return reply.value as R;
  throw replyError(reply);
}

interface RunOptions {
  req: NsRequest;
  namespaces: string[];
  stdio?: 'pipe' | 'inherit';
  onOutput?: (chunk: Buffer, stream: 'stdout' | 'stderr') => void;
  signal?: AbortSignal;
  timeoutMs?: number;
}

function pick(spec: RunSpec): Omit<RunOptions, 'req' | 'namespaces'> {
  const o: Omit<RunOptions, 'req' | 'namespaces'> = {};
  if (spec.stdio) o.stdio = spec.stdio;
  if (spec.onOutput) o.onOutput = spec.onOutput;
  if (spec.signal) o.signal = spec.signal;
  if (spec.timeoutMs !== undefined) o.timeoutMs = spec.timeoutMs;
  return o;
}

function absoluteRootfs(spec: RootfsSpec): RootfsSpec {
  return {
    lowerDirs: spec.lowerDirs.map((d) => path.resolve(d)),
    upperDir: path.resolve(spec.upperDir),
    scratchDir: path.resolve(spec.scratchDir),
    ...(spec.rootDir !== undefined ? { rootDir: path.resolve(spec.rootDir) } : {}),
  };
}

function replyError(reply: NsReply): Error {
  if (reply.type !== 'error') return new SlipwayError('ERR_SANDBOX', `unexpected sandbox reply: ${reply.type}`);
  return errorFromData(reply.error);
}

function errorFromData(d: NsErrorData): Error {
  if (d.code !== undefined && Object.hasOwn(ERROR_CODES, d.code)) {
    return SlipwayError.fromData({ ...d, code: d.code as ErrorCode });
  }
  const e = new Error(d.message) as Error & Partial<NsErrorData>;
  if (d.code !== undefined) e.code = d.code;
  if (d.line !== undefined) e.line = d.line;
  return e;
}

let setprivPath: string | null | undefined;
/** util-linux setpriv, to give unshare a parent-death signal; null where it is missing. */
function setpriv(): string | null {
  if (setprivPath === undefined) {
    setprivPath = HOST_PATH.split(':').map((d) => path.join(d, 'setpriv')).find((p) => fs.existsSync(p)) ?? null;
  }
  return setprivPath;
}

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

/** Children of `pid` (the entry under unshare), from /proc. */
function childPids(pid: number): number[] {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/**
 * Kills the whole namespace. SIGKILL goes to the entry (pid 1 inside) rather than to unshare,
 * so that unshare is still there to reap it: unshare then exits only after the namespace is
 * fully torn down, and our 'close' event means "nothing left". Before the entry exists, unshare
 * itself is killed (its --kill-child takes anything it forked along).
 */
function killNamespace(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const inner = childPids(child.pid);
  for (const pid of inner.length > 0 ? inner : [child.pid]) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** The host end of the control socket: hands the entry its request and collects its reply. */
interface ControlChannel {
  reply: NsReply | undefined;
  /** Settles when the entry's end has closed (at once if it never connected). */
  closed(): Promise<void>;
  destroy(): void;
}

function serveRequest(server: net.Server, req: NsRequest, onFinal: () => void): ControlChannel {
  let conn: net.Socket | undefined;
  let closed: Promise<void> = Promise.resolve();
  const channel: ControlChannel = {
    reply: undefined,
    closed: () => closed,
    destroy: () => conn?.destroy(),
  };
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
        const reply = JSON.parse(buf.slice(0, nl)) as NsReply;
        buf = buf.slice(nl + 1);
        channel.reply = reply;
        if (reply.type !== 'error') onFinal();
      }
    });
    c.write(`${JSON.stringify(req)}\n`);
  });
  return channel;
}

/** `[setpriv --pdeathsig SIGKILL --] unshare <namespaces> --fork --kill-child … node ns-entry.js`. */
function spawnEntry(opts: RunOptions): { child: ChildProcess; stderrTail: () => string } {
  const pdeath = setpriv();
  const argv = [
    ...(pdeath ? [pdeath, '--pdeathsig', 'SIGKILL', '--'] : []), // unshare dies with this thread
    'unshare', ...opts.namespaces, '--fork', '--kill-child', '--propagation', 'private',
    '--', process.execPath, '--no-warnings', NS_ENTRY,
  ];
  const stdio: StdioOptions = opts.stdio === 'inherit' ? 'inherit' : ['ignore', 'pipe', 'pipe'];
  // Only the scratch dir travels in the env; the request (env values, maybe secrets) goes over the socket.
  const env = { PATH: HOST_PATH, [NS_DIR_ENV]: opts.req.rootfs.scratchDir };
  const child = spawn(argv[0] as string, argv.slice(1), { env, stdio });
  let tail = '';
  child.stdout?.on('data', (b: Buffer) => opts.onOutput?.(b, 'stdout'));
  child.stderr?.on('data', (b: Buffer) => {
    tail = (tail + b.toString('utf8')).slice(-2000);
    opts.onOutput?.(b, 'stderr');
  });
  return { child, stderrTail: () => tail.trim() };
}

/** Starts the entry in fresh namespaces, hands it the request, and waits for it to be gone. */
async function runNsEntry(opts: RunOptions): Promise<NsReply> {
  const { req, signal } = opts;
  if (signal?.aborted) throw new SlipwayError('ERR_CANCELLED', 'build step cancelled');
  const layout = scratchLayout(req.rootfs.scratchDir);
  fs.mkdirSync(req.rootfs.scratchDir, { recursive: true });
  fs.rmSync(layout.socket, { force: true });
  const server = await listenControl(req.rootfs.scratchDir, layout.socketName);
  // Once the entry has answered, a late timeout or abort must not fail a finished step.
  const channel = serveRequest(server, req, () => disarm());
  const { child, stderrTail } = spawnEntry(opts);

  let stopped: 'timeout' | 'abort' | undefined;
  const stop = (why: 'timeout' | 'abort') => {
    stopped ??= why;
    killNamespace(child);
  };
  const timer = opts.timeoutMs === undefined ? undefined : setTimeout(() => stop('timeout'), opts.timeoutMs);
  const onAbort = () => stop('abort');
  signal?.addEventListener('abort', onAbort, { once: true });
  const disarm = () => {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  };

  let spawnError: Error | undefined;
  try {
    await new Promise<void>((resolve) => {
      child.once('error', (e) => {
        spawnError = e;
        resolve();
      });
      child.once('close', () => resolve());
    });
    // The reply may still be in flight on the socket; the entry is dead, so it closes soon.
    await channel.closed();
  } finally {
    disarm();
    server.close();
    channel.destroy();
    fs.rmSync(layout.socket, { force: true });
    // Overlay leaves work/work (mode 000) behind; the namespace is gone, nothing is mounted.
    fs.rmSync(layout.work, { recursive: true, force: true });
  }
  if (stopped === 'abort') throw new SlipwayError('ERR_CANCELLED', 'build step cancelled');
  if (stopped === 'timeout') {
    throw new SlipwayError('ERR_STEP_FAILED', `command timed out after ${opts.timeoutMs} ms and was killed`, { exitCode: 124 });
  }
  if (spawnError) throw new SlipwayError('ERR_SANDBOX', `cannot start the sandbox: ${spawnError.message}`);
  if (channel.reply === undefined) {
    const status = child.exitCode ?? child.signalCode;
    throw new SlipwayError('ERR_SANDBOX', `sandbox exited (${status}) without a result: ${stderrTail()}`);
  }
  return channel.reply;
}
