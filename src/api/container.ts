import fs from 'node:fs/promises';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { SlipwayError } from '../errors.js';
import type { StoreLayout, ImageId } from '../store/layout.js';
import { lowerDirsOf, makeTmpDir, readImage } from '../store/graph.js';
import { resolveUser } from '../snapshot/rootfs.js';
import { runInSandbox } from '../snapshot/sandbox.js';
import { containerEnv, envGet } from '../image-config.js';
import { limitMessage } from '../sandbox/limits.js';
import type { CreateRequest } from './container-config.js';
import { ApiError } from './http-errors.js';

/** Which stream a chunk of output came from (a tty has only stdout). */
export type StreamName = 'stdout' | 'stderr';
/** Where attached clients receive output; `end` when the container has exited. */
export interface OutputSink { data: (chunk: Buffer, stream: StreamName) => void; end: () => void }

/** Output kept per container for `logs` (the newest; older output is dropped). */
const LOG_BYTES = 1 << 20;
/** Stdin that arrives before the container starts is held up to this. */
const EARLY_STDIN_BYTES = 1 << 20;

/**
 * One container of `slipway serve`: created from an image, run once under the sandbox (as
 * `slipway run`), its output fanned out to attached clients and kept (bounded) for `logs`.
 * It lives in the server's memory: containers do not survive a restart of `serve`, and its
 * filesystem is discarded when it exits (there is no `commit`, `cp` or restart).
 */
export class Container {
  state: 'created' | 'running' | 'exited' = 'created';
  exitCode = 0;
  startedAt = '';
  finishedAt = '';
  readonly created = new Date().toISOString();
  private readonly log: Array<{ chunk: Buffer; stream: StreamName; at: string }> = [];
  private logBytes = 0;
  private readonly sinks = new Set<OutputSink>();
  private stdin: Writable | null = null;
  private earlyStdin: Buffer[] = [];
  private earlyBytes = 0;
  private stdinEnded = false;
  private size: { rows: number; cols: number } | undefined;
  private resizeFn: ((rows: number, cols: number) => void) | undefined;
  private killFn: ((sig: NodeJS.Signals) => void) | undefined;
  private readonly abort = new AbortController();
  private readonly exitWaiters: Array<() => void> = [];
  removed = false;
  private readonly removeWaiters: Array<() => void> = [];

  constructor(readonly id: string, readonly name: string, readonly imageId: ImageId, readonly req: CreateRequest) {
    this.size = req.consoleSize;
  }

  /** Output so far (for `logs`), oldest first. */
  logs(): Array<{ chunk: Buffer; stream: StreamName; at: string }> {
    return [...this.log];
  }

  attach(sink: OutputSink): () => void {
    if (this.state === 'exited') {
      sink.end();
      return () => undefined;
    }
    this.sinks.add(sink);
    return () => this.sinks.delete(sink);
  }

  private output(chunk: Buffer, stream: StreamName): void {
    this.log.push({ chunk, stream, at: new Date().toISOString() });
    this.logBytes += chunk.length;
    while (this.logBytes > LOG_BYTES && this.log.length > 1) this.logBytes -= this.log.shift()!.chunk.length;
    for (const s of this.sinks) s.data(chunk, stream);
  }

  /** Input from an attached client; held (bounded) until the container runs. */
  input(chunk: Buffer): void {
    if (!this.req.openStdin || this.state === 'exited') return;
    if (this.stdin) {
      this.stdin.write(chunk);
      return;
    }
    if (this.earlyBytes + chunk.length > EARLY_STDIN_BYTES) return;
    this.earlyStdin.push(chunk);
    this.earlyBytes += chunk.length;
  }

  /** The attached client closed its input: the container's stdin ends (Docker's StdinOnce). */
  endInput(): void {
    if (!this.req.stdinOnce) return;
    this.stdinEnded = true;
    this.stdin?.end();
  }

  resize(rows: number, cols: number): void {
    this.size = { rows, cols };
    this.resizeFn?.(rows, cols);
  }

  /** Sends a signal; SIGKILL ends the whole sandbox at once. */
  kill(sig: NodeJS.Signals): void {
    if (this.state !== 'running') return;
    if (sig === 'SIGKILL') this.abort.abort();
    else this.killFn?.(sig);
  }

  /** Resolves when the container has exited (at once when it has). */
  exited(): Promise<void> {
    if (this.state === 'exited') return Promise.resolve();
    return new Promise((r) => this.exitWaiters.push(r));
  }

  /** Resolves when the container is removed. */
  gone(): Promise<void> {
    if (this.removed) return Promise.resolve();
    return new Promise((r) => this.removeWaiters.push(r));
  }

  markRemoved(): void {
    this.removed = true;
    for (const w of this.removeWaiters.splice(0)) w();
  }

  /** Runs the container in the background; `onExit` follows its exit (auto-removal). */
  start(layout: StoreLayout, onExit: () => void): void {
    this.state = 'running';
    this.startedAt = new Date().toISOString();
    void this.run(layout).then((code) => {
      this.exitCode = code;
    }, (e: unknown) => {
      // A failure to start is reported as Docker's daemon does: on stderr, with status 125.
      this.output(Buffer.from(`slipway: ${(e as Error).message}\n`), 'stderr');
      this.exitCode = 125;
    }).finally(() => {
      this.state = 'exited';
      this.finishedAt = new Date().toISOString();
      for (const s of this.sinks) s.end();
      this.sinks.clear();
      for (const w of this.exitWaiters.splice(0)) w();
      onExit();
    });
  }

  private async run(layout: StoreLayout): Promise<number> {
    const { req } = this;
    const config = (await readImage(layout, this.imageId)).config;
    const argv = [...(req.entrypoint ?? config.Entrypoint ?? []), ...(req.cmd ?? (req.entrypoint ? [] : config.Cmd ?? []))];
    if (argv.length === 0) throw new ApiError(400, 'No command specified');
    const lowerDirs = await lowerDirsOf(layout, this.imageId);
    const ident = await resolveUser(lowerDirs, req.user || config.User || '');
    let env = [...(config.Env ?? [])];
    for (const e of req.env) env = [...env.filter((x) => x.split('=')[0] !== e.split('=')[0]), e];
    if (req.tty && envGet(env, 'TERM') === undefined) env = ['TERM=xterm', ...env];
    const hostname = req.hostname || this.id.slice(0, 12);
    env = containerEnv(env, { hostname, home: ident.home });
    const dir = await makeTmpDir(layout, 'run');
    try {
      await fs.mkdir(path.join(dir, 'upper'));
      await fs.mkdir(path.join(dir, 'scratch'));
      const res = await runInSandbox({
        lowerDirs, upperDir: path.join(dir, 'upper'), scratchDir: path.join(dir, 'scratch'), argv, env,
        uid: ident.uid, gid: ident.gid, groups: ident.groups, cwd: req.workingDir || config.WorkingDir || '/',
        hostname, network: req.network, sandbox: req.sandbox, volumes: Object.keys(config.Volumes ?? {}),
        signal: this.abort.signal, onOutput: (chunk, stream) => this.output(chunk, stream),
        attach: { tty: req.tty, stdin: req.openStdin, ...(this.size ? { size: this.size } : {}), onStart: (io) => this.started(io) },
      });
      if (res.limits) this.output(Buffer.from(`slipway: the container ran into its limits: ${limitMessage(res.limits, req.sandbox)}\n`), 'stderr');
      return res.exitCode;
    } catch (e) {
      if (e instanceof SlipwayError && e.code === 'ERR_CANCELLED') return 137;
      throw e;
    } finally {
      this.stdin = null;
      this.resizeFn = undefined;
      this.killFn = undefined;
      await fs.rm(dir, { recursive: true, force: true });
    }
  }

  private started(io: { stdin: Writable | null; resize: (r: number, c: number) => void; kill: (s: NodeJS.Signals) => void }): void {
    this.stdin = io.stdin;
    this.resizeFn = io.resize;
    this.killFn = io.kill;
    for (const b of this.earlyStdin) io.stdin?.write(b);
    this.earlyStdin = [];
    if (this.stdinEnded || !this.req.openStdin) io.stdin?.end();
    // A resize that came between create and now (the CLI resizes right after start).
    if (this.req.tty && this.size) io.resize(this.size.rows, this.size.cols);
  }
}
