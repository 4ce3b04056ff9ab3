/**
 * Fuzzing helper: runs one case through the real CLI against a throwaway copy of a template
 * store and judges it. A case passes when it succeeds, or fails cleanly: a non-zero status,
 * one `Error: …` line (no JavaScript stack trace), within the time limit, with nothing left in
 * `graph/_tmp`, nothing written outside the store, and the store as it was (see `storeDiff`).
 */
import fs from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { spawn, execFileSync } from 'node:child_process';
import { CLI, snapshotTree } from './cli.js';
import { ESCAPE_CANARY } from './fuzz-archives.js';

/** How a case ended. */
export type Outcome = 'success' | 'clean-error' | 'failure';

export interface CaseResult { kind: string; index: number; outcome: Outcome; reason?: string; ms: number; stderr?: string }

/** What gives a JavaScript error away in the output. */
export const STACK = /^\s+at \S.*(?::\d+:\d+\)?|\(native\))$|node:internal|Unhandled 'error' event|^(?:Error: )?(?:TypeError|RangeError|ReferenceError|SyntaxError|AssertionError)\b|Error: Error:|Maximum call stack/m;

/** Runs `slipway --root ROOT ARGS`, killed after `timeoutMs`. */
export function runCli(root: string, args: string[], timeoutMs: number): Promise<{ code: number; stdout: string; stderr: string; timedOut: boolean }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [CLI, '--root', root, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => { timedOut = true; c.kill('SIGKILL'); }, timeoutMs);
    c.stdout.on('data', (d: Buffer) => { if (stdout.length < 1 << 20) stdout += d.toString(); });
    c.stderr.on('data', (d: Buffer) => { if (stderr.length < 1 << 20) stderr += d.toString(); });
    c.on('close', (code) => { clearTimeout(timer); resolve({ code: code ?? 1, stdout, stderr, timedOut }); });
  });
}

/**
 * What changed in the store that an error must not change. A load or import must leave it
 * byte-identical. A build may keep what its completed steps made (complete images, their cache
 * and history records: Docker keeps those too) and records its failure in `builds/`.
 */
export async function storeDiff(before: readonly string[], after: readonly string[], allowSteps: boolean): Promise<string[]> {
  const pathOf = (l: string) => l.split(' ')[0]!;
  const had = new Map(before.map((l) => [pathOf(l), l]));
  const now = new Map(after.map((l) => [pathOf(l), l]));
  const bad: string[] = [];
  for (const [p, l] of had) if (now.get(p) !== l && !(allowSteps && /^(cache|history)\//.test(p))) bad.push(`changed or removed: ${p}`);
  const newImages = new Set<string>();
  for (const p of now.keys()) {
    if (had.has(p) || p.startsWith('builds')) continue;
    const img = /^graph\/([0-9a-f]{64})(?:\/|$)/.exec(p)?.[1];
    if (allowSteps && (img || /^(cache|history)(\/|$)/.test(p))) {
      if (img) newImages.add(img);
      continue;
    }
    bad.push(`added: ${p}`);
  }
  for (const id of newImages) {
    for (const f of ['json', 'layersize', 'diffid', 'layer']) if (!now.has(`graph/${id}/${f}`)) bad.push(`incomplete image ${id.slice(0, 12)}: no ${f}`);
  }
  return bad;
}

/** Judges one finished case. */
export async function judge(r: { code: number; stdout: string; stderr: string; timedOut: boolean }, root: string, before: readonly string[], kind: 'build' | 'load'): Promise<{ outcome: Outcome; reason?: string }> {
  if (r.timedOut) return { outcome: 'failure', reason: 'hang: killed after the time limit' };
  if (STACK.test(r.stderr) || STACK.test(r.stdout)) return { outcome: 'failure', reason: 'a JavaScript stack trace or error name in the output' };
  if (existsSync(ESCAPE_CANARY)) {
    await fs.rm(ESCAPE_CANARY, { recursive: true, force: true });
    return { outcome: 'failure', reason: `wrote ${ESCAPE_CANARY} outside the store` };
  }
  const leftover = await fs.readdir(path.join(root, 'graph', '_tmp')).catch(() => [] as string[]);
  if (leftover.length) return { outcome: 'failure', reason: `left in graph/_tmp: ${leftover.join(' ')}` };
  if (r.code === 0) return { outcome: 'success' };
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '' && !/^(WARNING|warning):/.test(l));
  if (lines.length === 0) return { outcome: 'failure', reason: 'failed without a message' };
  // One line, or Docker's usage form ("…\nSee 'slipway build --help'."), or one error quoting
  // multi-line input (Docker's "The command '<heredoc>' returned a non-zero code: 1").
  if (lines.length > 2 && !/^Error: /.test(lines[0]!)) return { outcome: 'failure', reason: `${lines.length} lines of error output: ${lines.slice(0, 3).join(' | ').slice(0, 300)}` };
  const allowSteps = kind === 'build' && r.stdout.includes('---> Running in');
  const bad = await storeDiff(before, await snapshotTree(root), allowSteps);
  if (bad.length) return { outcome: 'failure', reason: `the store changed: ${bad.slice(0, 5).join('; ')}` };
  return { outcome: 'clean-error' };
}

/** A fresh copy of the template store at `root` (its snapshot equals the template's). */
export async function resetStore(template: string, root: string): Promise<void> {
  await fs.rm(root, { recursive: true, force: true });
  execFileSync('cp', ['-a', template, root]);
}
