/**
 * Test helper: runs a bash script in a private mount namespace (`unshare --mount`), where it may
 * mount a tiny tmpfs or a read-only bind mount that no other process sees and that vanishes
 * with the namespace. `$CLI` in the script runs the compiled slipway CLI.
 */
import { spawn } from 'node:child_process';
import { CLI } from './cli.js';

/** The script's exit status and output. */
export interface ScriptResult { code: number; stdout: string; stderr: string }

export function inPrivateMounts(script: string, env: Record<string, string> = {}): Promise<ScriptResult> {
  return new Promise((resolve, reject) => {
    const c = spawn('unshare', ['--mount', '--propagation', 'private', 'bash', '-c', `set -u\n${script}`], {
      env: { ...process.env, ...env, CLI: `${process.execPath} ${CLI}` }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    c.on('error', reject);
    c.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

/** The lines of `out` between `BEGIN name` and `END name` markers the script printed. */
export function section(out: string, name: string): string {
  const m = new RegExp(`BEGIN ${name}\\n([\\s\\S]*?)END ${name}\\n`).exec(out);
  if (!m) throw new Error(`no section ${name} in:\n${out}`);
  return m[1]!;
}
