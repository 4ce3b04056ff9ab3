/**
 * Child processes for build-bench: each runs in its own process group, is timed from spawn to exit,
 * and is tracked in `live` so that an interrupted bench stops every one of them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';

// Lines that open a step in legacy-format output (Slipway, docker legacy) and in buildah's.
const STEP_LINE = /^(Step \d+\/\d+ :|STEP \d+\/\d+:)/;

/** One finished command: exit code, wall seconds, the output's tail and when each step line appeared. */
export interface RunResult { code: number | null; seconds: number; output: string; steps: { at: number; text: string }[] }

/** Thrown by `run` once the bench is interrupted: no new build starts after Ctrl-C. */
export class Interrupted extends Error {}

/** Every child still running, so the cleanup can stop them all. */
export const live = new Set<ChildProcess>();
let interrupted = false;

/** From now on `run` refuses to start anything but cleanup commands. */
export function interrupt(): void {
  interrupted = true;
}

export function isInterrupted(): boolean {
  return interrupted;
}

/**
 * Runs a command in its own process group (so a terminal Ctrl-C reaches only us, and we stop
 * children in order), timing spawn → exit and stamping the step lines of its stdout.
 */
export function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; cleanup?: boolean } = {}): Promise<RunResult> {
  if (interrupted && !opts.cleanup) return Promise.reject(new Interrupted('interrupted'));
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    live.add(child);
    let output = '';
    let partial = '';
    let exitAt = 0;
    let settled = false;
    const steps: RunResult['steps'] = [];
    const keep = (s: string) => {
      output += s;
      if (output.length > 256_000) output = output.slice(-128_000);
    };
    child.stdout!.setEncoding('utf8').on('data', (s: string) => {
      const at = round((performance.now() - t0) / 1000);
      keep(s);
      const lines = (partial + s).split('\n');
      partial = lines.pop()!;
      for (const l of lines) if (STEP_LINE.test(l)) steps.push({ at, text: l.slice(0, 72) });
    });
    child.stderr!.setEncoding('utf8').on('data', keep);
    child.on('error', (e) => {
      live.delete(child);
      if (settled) return;
      settled = true;
      reject(e);
    });
    child.on('exit', () => (exitAt = performance.now()));
    child.on('close', (code) => {
      live.delete(child);
      if (settled) return;
      settled = true;
      resolve({ code, seconds: ((exitAt || performance.now()) - t0) / 1000, output, steps });
    });
  });
}

/** Like `run`, but a non-zero exit is an error carrying the output's tail. */
export async function must(cmd: string, args: string[], opts: Parameters<typeof run>[2] = {}): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${path.basename(cmd)} ${args.join(' ')}: exit ${r.code}\n${tail(r.output, 30)}`);
  return r;
}

export function tail(text: string, lines: number): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

export function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

export function onPath(name: string): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(':')) {
    const p = path.join(dir || '.', name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch { /* next */ }
  }
  return undefined;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true;
  return Promise.race([new Promise<boolean>((r) => child.once('exit', () => r(true))), sleep(ms).then(() => false)]);
}

/**
 * Stops one child: `sig` to it alone (so dockerd stops its containerd, and Slipway its sandboxes,
 * in their own order), then SIGKILL to its whole process group once it has exited or after `ms`.
 */
export async function stopChild(child: ChildProcess, sig: NodeJS.Signals, ms: number): Promise<void> {
  if (child.pid === undefined) return;
  if (child.exitCode === null && child.signalCode === null) child.kill(sig);
  await waitExit(child, ms);
  try {
    process.kill(-child.pid, 'SIGKILL'); // the leader if it hung, and stragglers of its group
  } catch { /* group already empty */ }
}
