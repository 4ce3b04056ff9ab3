/**
 * The shims of this thread, started by one small native process (native/spawner.c) rather than
 * by Node itself. Node's spawn forks the whole Node process and blocks the calling thread until
 * the child has exec'd, several milliseconds per step (more with a large heap, and again for
 * every prepared network); the spawner is small, is started once per thread, and forks on
 * request. It relays each child's stdout, stderr and fd 3 back, then its exit status once the
 * child has exited and closed them (what Node's 'close' event means).
 *
 * Lifetime: the spawner dies with the thread that started it (PR_SET_PDEATHSIG) and kills its
 * children when its stdin closes; every shim dies with its parent, so kill -9 of this process
 * still leaves nothing running. It keeps the event loop alive only while a child that asked
 * for that (a step, not a prepared network) is running.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { constants as osConstants } from 'node:os';
import { fileURLToPath } from 'node:url';
import { SlipwayError } from '../errors.js';

/** A child of the spawner. */
export interface SpawnedProcess {
  pid: number;
  /** Its exit status (128+N for signal N), once it has exited and closed its stdout, stderr and fd 3. */
  exited: Promise<number>;
  /** Signals it, unless it has already been reaped (so never a reused pid). */
  kill(signal: NodeJS.Signals): void;
}

export interface SpawnOptions {
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
  /** What it writes on fd 3. */
  onFd3?: (chunk: Buffer) => void;
  /** Its stdin is a pipe kept open until it exits (a `--hold` shim waits for it to close); else /dev/null. */
  holdStdin?: boolean;
  /** false: its running does not keep this process alive. Default true. */
  ref?: boolean;
}

interface Entry {
  o: SpawnOptions;
  started: (pid: number) => void;
  /** The spawner's message ('F'). */
  failed: (message: string) => void;
  exit: (code: number) => void;
  gone: (e: Error) => void;
}

const SPAWNER = fileURLToPath(new URL('../../native/slipway-spawner', import.meta.url));

class Spawner {
  private readonly child: ChildProcess;
  private readonly entries = new Map<number, Entry>();
  private nextId = 1;
  private refs = 0;
  private pending: Buffer = Buffer.alloc(0);
  dead = false;

  constructor() {
    if (!fs.existsSync(SPAWNER)) {
      throw new SlipwayError('ERR_SANDBOX', `${SPAWNER} is missing: run "npm run build" (it compiles native/spawner.c)`);
    }
    // Its own session, as every shim had: a terminal's ^C reaches only this process, which cancels.
    this.child = spawn(SPAWNER, [], { stdio: ['pipe', 'pipe', 'ignore'], detached: true, env: { PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin' } });
    this.child.stdout?.on('data', (b: Buffer) => this.onData(b));
    this.child.stdin?.on('error', () => undefined);
    this.child.once('error', (e) => this.die(e));
    this.child.once('exit', () => this.die(new Error('the spawner exited')));
    this.setRef(false);
  }

  private setRef(on: boolean): void {
    const streams = [this.child.stdin, this.child.stdout] as Array<{ ref?: () => void; unref?: () => void } | null>;
    for (const h of [this.child, ...streams]) (on ? h?.ref : h?.unref)?.call(h);
  }

  private die(e: Error): void {
    if (this.dead) return;
    this.dead = true;
    const err = new SlipwayError('ERR_SANDBOX', `the sandbox's process spawner failed: ${e.message}`);
    for (const entry of this.entries.values()) entry.gone(err);
    this.entries.clear();
    this.setRef(false);
  }

  private onData(b: Buffer): void {
    this.pending = this.pending.length === 0 ? b : Buffer.concat([this.pending, b]);
    while (this.pending.length >= 9) {
      const len = this.pending.readUInt32LE(5);
      if (this.pending.length < 9 + len) break;
      const id = this.pending.readUInt32LE(0);
      const kind = String.fromCharCode(this.pending[4]!);
      const data = this.pending.subarray(9, 9 + len);
      this.pending = this.pending.subarray(9 + len);
      this.dispatch(id, kind, data);
    }
  }

  private dispatch(id: number, kind: string, data: Buffer): void {
    const e = this.entries.get(id);
    if (e === undefined) return;
    if (kind === 'P') e.started(Number(data.toString()));
    else if (kind === 'O') e.o.onStdout?.(data);
    else if (kind === 'E') e.o.onStderr?.(data);
    else if (kind === 'T') e.o.onFd3?.(data);
    else if (kind === 'F' || kind === 'X') {
      this.entries.delete(id);
      if (e.o.ref !== false && --this.refs === 0) this.setRef(false);
      if (kind === 'F') e.failed(data.toString());
      else e.exit(Number(data.toString()));
    }
  }

  private send(op: 'S' | 'K' | 'Y', id: number, body: Buffer): void {
    const head = Buffer.alloc(9);
    head.writeUInt32LE(5 + body.length, 0);
    head.write(op, 4, 'latin1');
    head.writeUInt32LE(id, 5);
    this.child.stdin?.write(Buffer.concat([head, body]));
  }

  start(argv: string[], o: SpawnOptions): Promise<SpawnedProcess> {
    const id = this.nextId++;
    let exit!: (code: number) => void;
    let gone!: (e: Error) => void;
    const exited = new Promise<number>((res, rej) => { exit = res; gone = rej; });
    exited.catch(() => undefined); // a caller still starting gets the error from the start promise
    let reaped = false;
    void exited.finally(() => (reaped = true)).catch(() => undefined);
    return new Promise<SpawnedProcess>((resolve, reject) => {
      this.entries.set(id, {
        o,
        started: (pid) => resolve({
          pid, exited,
          kill: (sig) => { if (!reaped && !this.dead) this.send('K', id, u32(osConstants.signals[sig])); },
        }),
        failed: (message) => reject(new SlipwayError('ERR_SANDBOX', `cannot start the sandbox: ${message}`)),
        exit,
        gone: (e) => { reject(e); gone(e); },
      });
      if (o.ref !== false && this.refs++ === 0) this.setRef(true);
      const args = Buffer.from(argv.map((a) => `${a}\0`).join(''));
      this.send('S', id, Buffer.concat([Buffer.from([o.holdStdin ? 1 : 0]), args]));
    });
  }

  /** syncfs(2) on the filesystem holding `dir`, done by the spawner itself (no process to start). */
  syncfs(dir: string): Promise<void> {
    const id = this.nextId++;
    return new Promise<void>((resolve, reject) => {
      this.entries.set(id, {
        o: {},
        started: () => undefined,
        failed: (message) => reject(new SlipwayError('ERR_INTERNAL', `cannot sync the filesystem of ${dir} (${message})`)),
        exit: () => resolve(),
        gone: reject,
      });
      if (this.refs++ === 0) this.setRef(true);
      this.send('Y', id, Buffer.from(`${dir}\0`));
    });
  }
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n, 0);
  return b;
}

let current: Spawner | undefined;

/** syncfs(2) on the filesystem holding `dir`, by this thread's spawner. */
export function syncfsViaSpawner(dir: string): Promise<void> {
  if (current === undefined || current.dead) current = new Spawner();
  return current.syncfs(dir);
}

/** Starts `argv` (argv[0] an absolute path) through this thread's spawner; resolves once it runs. */
export function spawnViaSpawner(argv: string[], o: SpawnOptions = {}): Promise<SpawnedProcess> {
  if (current === undefined || current.dead) current = new Spawner();
  return current.start(argv, o);
}
