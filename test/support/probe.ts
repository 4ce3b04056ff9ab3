/** Test helpers: static probe binaries (built with the machine's `gcc -static`) and builds that run them. */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { slipway } from './cli.js';

/** Whether `gcc -static` works here (it needs libc6-dev's libc.a). */
export function canBuildStatic(): boolean {
  try {
    execFileSync('sh', ['-c', 'echo "int main(void){return 0;}" | gcc -static -x c -o /dev/null -'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Compiles C `source` into a static executable named `name` inside `dir`. */
export async function buildProbe(dir: string, name: string, source: string): Promise<void> {
  const src = path.join(os.tmpdir(), `slipway-probe-${process.pid}-${name}.c`);
  await fs.writeFile(src, source);
  try {
    execFileSync('gcc', ['-static', '-O1', '-o', path.join(dir, name), src], { stdio: ['ignore', 'ignore', 'inherit'] });
  } finally {
    await fs.rm(src, { force: true });
  }
}

/** Builds `dockerfile` in `ctx` with extra build flags; returns exit code and all output. */
export async function buildIn(root: string, ctx: string, dockerfile: string, flags: string[] = []): Promise<{ code: number; out: string }> {
  await fs.writeFile(path.join(ctx, 'Dockerfile'), dockerfile);
  const r = await slipway(root, ['build', '--no-cache', ...flags, ctx]);
  return { code: r.code, out: r.stdout + r.stderr };
}
