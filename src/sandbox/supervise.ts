/**
 * Runs one shim and waits until it, and everything under it, is gone. A plain step (output to a
 * callback, no stdin) is started by this thread's spawner (spawner.ts), which saves Node a fork
 * of itself per step; `slipway run` (the terminal's stdio) and the API's attached containers
 * (stdin, a relayed pty) are spawned by Node, which hands them those fds.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import type { Writable } from 'node:stream';
import { SlipwayError } from '../errors.js';
import { CONSOLE_CONTROL_FD, type AttachedIo } from './console.js';
import { spawnViaSpawner } from './spawner.js';

/** What supervising a shim needs to know of the run. */
export interface Supervised {
  /** `slipway run`: the terminal's stdio, `-i` to pass stdin. */
  interactive?: { tty: boolean; stdin: boolean };
  attach?: AttachedIo;
  onOutput?: (chunk: Buffer, stream: 'stdout' | 'stderr') => void;
  signal?: AbortSignal;
  timeoutMs?: number;
  /** Called once the shim has joined the step's cgroups and started its pid 1. */
  onStarted?: () => void;
}

export interface Outcome { code: number; timedOut: boolean; setupError?: string }

/** The shim's status lines on fd 3: the host pid of its pid 1, or a setup error. */
function statusReader(onPid?: () => void): { feed: (chunk: Buffer | string) => void; pid: () => number | undefined; error: () => string | undefined } {
  let pid: number | undefined;
  let error: string | undefined;
  let buf = '';
  const feed = (chunk: Buffer | string) => {
    buf += chunk.toString();
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.startsWith('pid ')) {
        pid = Number(line.slice(4));
        onPid?.();
      }
      else if (line.startsWith('error ')) error = line.slice(6);
    }
  };
  return { feed, pid: () => pid, error: () => error };
}

/** A started shim, however it was started. */
interface Started { pid: number | undefined; closed: Promise<number>; kill: (sig: NodeJS.Signals) => void }

const ENV = () => ({ PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin' });

/** Node's own spawn, for a run that needs the terminal's or the API's fds. */
function spawnDirect(run: Supervised, argv: string[], status: ReturnType<typeof statusReader>): Started {
  const io: StdioOptions = run.interactive
    ? [run.interactive.stdin ? 'inherit' : 'ignore', 'inherit', 'inherit', 'pipe']
    : [run.attach?.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe', 'pipe', run.attach?.tty ? 'pipe' : 'ignore'];
  // Its own session: a terminal's ^C reaches only us, and we forward it (as docker's sig-proxy).
  const child = spawn(argv[0]!, argv.slice(1), { stdio: io, detached: true, env: ENV() });
  child.stdout?.on('data', (b: Buffer) => run.onOutput?.(b, 'stdout'));
  child.stderr?.on('data', (b: Buffer) => run.onOutput?.(b, 'stderr'));
  child.stdio[3]?.on('data', status.feed);
  if (run.attach) startAttached(run.attach, child);
  const closed = new Promise<number>((resolve, reject) => {
    child.once('error', (e) => reject(new SlipwayError('ERR_SANDBOX', `cannot start the sandbox: ${e.message}`)));
    child.once('close', (c, sig) => resolve(c ?? 128 + (sig === 'SIGKILL' ? 9 : 15)));
  });
  return { pid: child.pid, closed, kill: (sig) => child.kill(sig) };
}

/** Hands an attached container's stdin and resize to the caller. */
function startAttached(a: AttachedIo, child: ChildProcess): void {
  const ctl = child.stdio[CONSOLE_CONTROL_FD] as Writable | null | undefined;
  ctl?.on('error', () => undefined);
  child.stdin?.on('error', () => undefined);
  a.onStart({
    stdin: child.stdin ?? null,
    resize: (rows, cols) => { if (ctl?.writable) ctl.write(`${rows} ${cols}\n`); },
    kill: (sig) => { child.kill(sig); },
  });
}

async function start(run: Supervised, argv: string[], status: ReturnType<typeof statusReader>): Promise<Started> {
  if (run.interactive || run.attach) return spawnDirect(run, argv, status);
  const p = await spawnViaSpawner(argv, {
    onStdout: (b) => run.onOutput?.(b, 'stdout'),
    onStderr: (b) => run.onOutput?.(b, 'stderr'),
    onFd3: status.feed,
  });
  return { pid: p.pid, closed: p.exited, kill: (sig) => p.kill(sig) };
}

const SIGNALS_TO_FORWARD: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'];

/** Starts the shim `argv` and waits until it, and everything under it, is gone. */
export async function supervise(run: Supervised, argv: string[]): Promise<Outcome> {
  if (run.signal?.aborted) throw new SlipwayError('ERR_CANCELLED', 'build step cancelled');
  const status = statusReader(run.onStarted);
  const child = await start(run, argv, status);
  let stopped: 'timeout' | 'abort' | undefined;
  // SIGKILL to pid 1 rather than the outer shim: the outer one then reaps it, so its exit means
  // the pid namespace, and with it the mount namespace, is torn down.
  const stop = (why: 'timeout' | 'abort') => {
    stopped ??= why;
    const target = status.pid();
    if (target === undefined) child.kill('SIGKILL');
    else try { process.kill(target, 'SIGKILL'); } catch { /* gone */ }
  };
  const timer = run.timeoutMs ? setTimeout(() => stop('timeout'), run.timeoutMs) : undefined;
  const onAbort = () => stop('abort');
  run.signal?.addEventListener('abort', onAbort, { once: true });
  // Aborted while it was starting: the listener above came too late to hear it.
  if (run.signal?.aborted) stop('abort');
  const forward = (sig: NodeJS.Signals) => child.kill(sig);
  if (run.interactive) for (const s of SIGNALS_TO_FORWARD) process.on(s, forward);
  try {
    const code = await child.closed;
    if (stopped === 'abort') throw new SlipwayError('ERR_CANCELLED', 'build step cancelled');
    const setupError = status.error();
    return { code, timedOut: stopped === 'timeout', ...(setupError !== undefined ? { setupError } : {}) };
  } finally {
    clearTimeout(timer);
    run.signal?.removeEventListener('abort', onAbort);
    if (run.interactive) for (const s of SIGNALS_TO_FORWARD) process.off(s, forward);
  }
}
