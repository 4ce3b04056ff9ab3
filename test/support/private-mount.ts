/**
 * Test helper: runs a bash script in a private mount namespace (`unshare --mount`), where it may
 * mount a tiny tmpfs or a read-only bind mount that no other process sees and that vanishes
 * with the namespace. `$CLI` in the script runs the compiled slipway CLI.
 */
import { CLI, runProcess } from './cli.js';

/** The script's exit status and output. */
export interface ScriptResult { code: number; stdout: string; stderr: string }

export function inPrivateMounts(script: string, env: Record<string, string> = {}): Promise<ScriptResult> {
  return runProcess('unshare', ['--mount', '--propagation', 'private', 'bash', '-c', `set -u\n${script}`], { env: { ...process.env, ...env, CLI: `${process.execPath} ${CLI}` } });
}

/** The lines of `out` between `BEGIN name` and `END name` markers the script printed. */
export function section(out: string, name: string): string {
  const m = new RegExp(`BEGIN ${name}\\n([\\s\\S]*?)END ${name}\\n`).exec(out);
  if (!m) throw new Error(`no section ${name} in:\n${out}`);
  return m[1]!;
}
