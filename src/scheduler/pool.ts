import os from 'node:os';
import path from 'node:path';
import { rm } from 'node:fs/promises';
import { MessageChannel } from 'node:worker_threads';
import type { Piscina } from 'piscina';
import type { StepResult, StepTask } from '../snapshot/run-step.js';

const STEP_WORKER = new URL('../../workers/step.js', import.meta.url).href;
const DIGEST_WORKER = new URL('../../workers/digest.js', import.meta.url).href;
const WARM_WORKER = new URL('../../workers/warm.js', import.meta.url).href;

/**
 * Twice the cores, and at least 4. A thread holds its step for the step's whole life, and a RUN
 * step spends most of it waiting on its container (a `sleep`, a download, a compiler in other
 * processes): with one thread per core, two sleeping stages kept a third, ready stage waiting
 * (the corpus's multi-stage entry, 0.6 s on 2 cores). Threads start only when steps are ready
 * for them.
 */
export function defaultWorkers(): number {
  return Math.max(4, 2 * os.availableParallelism());
}

/**
 * The only owner of piscina. RUN/COPY/ADD steps and context hashing run in its threads (or, for
 * a one-shot pool, on the calling thread while it has nothing else to run: see `here`); a
 * crashed worker fails its task (as data), never the process.
 */
export class WorkerPool {
  private piscina: Promise<Piscina> | undefined;
  private readonly threads: number;
  private readonly resident: boolean;

  /**
   * `resident`: a long-running engine's pool (serve, a farm worker). All its threads start now
   * and stay, as a daemon's do: a build's steps then find threads that have loaded their modules
   * (~90 ms of CPU per thread on a 2-core VM), not one starting beside them (the third stage of
   * the corpus's multi-stage, alternated cold builds through fresh engines: medians 2256 -> 2220
   * and 2297 -> 2275 ms over 7 each, against threads for the cores only). With `warmDomain` (the
   * store's tmp folder) each also readies its sandbox (see prewarmThread).
   */
  constructor(opts: { workers?: number; resident?: boolean; warmDomain?: string } = {}) {
    this.threads = Math.max(1, opts.workers ?? defaultWorkers());
    this.resident = opts.resident ?? false;
    if (!this.resident) return;
    const warm = opts.warmDomain;
    this.ready = this.pool.then(async (p) => {
      // One task per resident thread, sent at once: idle threads take one each.
      if (warm !== undefined) await Promise.all(Array.from({ length: p.minThreads }, () => p.run({ domain: warm }, { filename: WARM_WORKER }).catch(() => undefined)));
    }, () => undefined);
  }

  /** Settles once a resident pool's threads are up and readied (at once for a one-shot pool); never rejects. */
  readonly ready: Promise<void> = Promise.resolve();

  /** A one-shot build's threads start on first use: a build served wholly from the cache never starts one. */
  private get pool(): Promise<Piscina> {
    this.piscina ??= import('piscina').then(({ Piscina: P }) => {
      const minThreads = this.resident ? this.threads : 1;
      // A one-shot pool's calling thread runs tasks too (see `here`): one thread fewer.
      const maxThreads = this.resident ? this.threads : Math.max(1, this.threads - 1);
      const p = new P({ filename: STEP_WORKER, minThreads, maxThreads, idleTimeout: 30_000, atomics: 'disabled' });
      // An error outside any task must not crash the process.
      p.on('error', () => undefined);
      return p;
    });
    return this.piscina;
  }

  /** Tasks running or waiting on the calling thread (a one-shot pool's, see `here`). */
  private hereTasks = 0;
  private hereTurn: Promise<unknown> = Promise.resolve();

  /**
   * A one-shot pool (a standalone `slipway build`) runs a task on the calling thread when none
   * runs there already: a worker thread takes ~70 ms to come up on a 2-core VM before it loads
   * a module, which a build of sequential steps never needs. A task that comes while one runs
   * here goes to the threads (parallel stages), started then, so that `--workers N` still means
   * N tasks at once: this thread and N - 1 threads. With N = 1 a task waits its turn here.
   * Undefined: not here.
   */
  private here<T>(job: () => Promise<T>): Promise<T> | undefined {
    if (this.resident || (this.hereTasks > 0 && this.threads > 1)) return undefined;
    this.hereTasks++;
    const run = this.hereTurn.then(job).finally(() => {
      this.hereTasks--;
    });
    this.hereTurn = run.catch(() => undefined);
    return run;
  }

  /** Runs a step (on this thread or a worker, see `here`); `onOutput` receives RUN output as it is produced. */
  async runStep(task: StepTask, onOutput?: (text: string) => void, signal?: AbortSignal): Promise<StepResult> {
    let port: MessageChannel | undefined;
    if (task.type === 'run' && onOutput) {
      port = new MessageChannel();
      port.port1.on('message', (m: string) => onOutput(m));
      task = { ...task, port: port.port2 };
    }
    const here = this.here(() => runHere(task, signal));
    if (here) {
      try {
        return await here;
      } finally {
        if (port) setImmediate(() => port!.port1.close());
      }
    }
    // Cancelled, the thread's step is told so (and kills its container, removes its folder),
    // rather than the thread terminated under it, which left its folder in graph/_tmp.
    const cancel = signal ? new MessageChannel() : undefined;
    const onAbort = () => cancel!.port1.postMessage('cancel');
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) onAbort();
    try {
      const transfer = [...(port ? [port.port2] : []), ...(cancel ? [cancel.port2] : [])];
      const res = (await (await this.pool).run({ ...task, ...(cancel ? { cancel: cancel.port2 } : {}) }, { transferList: transfer as never })) as StepResult;
      return await settleCancelled(res, signal);
    } catch (e) {
      const aborted = signal?.aborted;
      return {
        ok: false,
        error: { code: aborted ? 'ERR_CANCELLED' : 'ERR_INTERNAL', message: aborted ? 'build cancelled' : `worker failed: ${(e as Error).message}` },
      };
    } finally {
      signal?.removeEventListener('abort', onAbort);
      cancel?.port1.close();
      // Let the last output messages drain before closing our end.
      if (port) setImmediate(() => port!.port1.close());
    }
  }

  /** Digests COPY/ADD sources (on this thread or a worker, see `here`). */
  async digest<T>(task: unknown): Promise<T> {
    const here = this.here(async () => ((await import(DIGEST_WORKER)) as { default: (t: unknown) => Promise<T> }).default(task));
    if (here) return await here;
    return (await (await this.pool).run(task, { filename: DIGEST_WORKER })) as T;
  }

  async close(): Promise<void> {
    if (this.piscina) await (await this.piscina).destroy();
  }
}

/**
 * A step on this thread. Cancelled, it is what a cancelled thread's step is: ERR_CANCELLED,
 * its layer (if it finished anyway) removed.
 */
async function runHere(task: StepTask, signal: AbortSignal | undefined): Promise<StepResult> {
  let res: StepResult;
  try {
    const { runStep } = await import('../snapshot/run-step.js');
    res = await runStep(task, signal);
  } catch (e) {
    // As a thread's crash is: a failed step, as data.
    return { ok: false, error: { code: 'ERR_INTERNAL', message: `step failed: ${(e as Error).message}` } };
  }
  return settleCancelled(res, signal);
}

/** A step's result once its build may have been cancelled: then ERR_CANCELLED, and its layer (if it finished anyway) removed. */
async function settleCancelled(res: StepResult, signal: AbortSignal | undefined): Promise<StepResult> {
  if (!signal?.aborted) return res;
  if (res.ok) await rm(path.dirname(res.layerDir), { recursive: true, force: true });
  return { ok: false, error: { code: 'ERR_CANCELLED', message: 'build cancelled' } };
}
