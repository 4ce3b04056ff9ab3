/**
 * The default seccomp profile compiled once into the BPF program the kernel loads. crun takes
 * it from the `run.oci.seccomp_bpf_data` annotation instead of compiling the JSON profile
 * again for every step. Compiled by native/seccomp-bpf.c (libseccomp), cached in memory and in
 * /run/slipway (root's, 0711), keyed by the profile and the compiler.
 */
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SeccompProfile } from './seccomp.js';

const COMPILER = fileURLToPath(new URL('../../native/slipway-seccomp', import.meta.url));
const CACHE_DIR = '/run/slipway';
const ARCHES: Record<string, string> = { SCMP_ARCH_X86_64: 'x86_64', SCMP_ARCH_X86: 'x86', SCMP_ARCH_X32: 'x32' };

/** The profile in the compiler's line format (see native/seccomp-bpf.c). */
export function profileText(p: SeccompProfile): string {
  const lines = [`default errno ${p.defaultErrnoRet}`, ...p.architectures.map((a) => `arch ${ARCHES[a] ?? a}`)];
  for (const rule of p.syscalls) {
    const verb = rule.action === 'SCMP_ACT_ALLOW' ? 'allow' : `errno ${rule.errnoRet ?? p.defaultErrnoRet}`;
    const arg = rule.args?.[0];
    const cmp = arg ? ` ${arg.index} ${arg.op.replace(/^SCMP_CMP_/, '').toLowerCase()} ${arg.value}${arg.valueTwo !== undefined ? ` ${arg.valueTwo}` : ''}` : '';
    for (const name of rule.names) lines.push(`${verb} ${name}${cmp}`);
  }
  return `${lines.join('\n')}\n`;
}

const memo = new Map<string, Promise<string | undefined>>();

function keyOf(text: string): string | undefined {
  try {
    const st = fs.statSync(COMPILER);
    return crypto.createHash('sha256').update(`${st.size}:${st.mtimeMs}\n${text}`).digest('hex').slice(0, 32);
  } catch {
    return undefined; // no compiler built: the runtime compiles the JSON profile itself
  }
}

function readCached(file: string): string | undefined {
  try {
    const st = fs.statSync(file);
    // Only a file root wrote and nobody else can change counts.
    if (st.uid !== 0 || (st.mode & 0o022) !== 0 || st.size === 0 || st.size % 8 !== 0) return undefined;
    return fs.readFileSync(file).toString('base64');
  } catch {
    return undefined;
  }
}

function compile(text: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const c = spawn(COMPILER, [], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    c.stdout.on('data', (b: Buffer) => out.push(b));
    c.stderr.on('data', (b: Buffer) => (err += b.toString()));
    c.on('error', reject);
    c.on('close', (code) => (code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(err.trim() || `exit ${code}`))));
    c.stdin.end(text);
  });
}

/** The base64 BPF of `p`, or undefined where it cannot be compiled here (the runtime then compiles it). */
export function compiledSeccomp(p: SeccompProfile): Promise<string | undefined> {
  const text = profileText(p);
  const key = keyOf(text);
  if (key === undefined) return Promise.resolve(undefined);
  let hit = memo.get(key);
  if (hit === undefined) {
    hit = (async () => {
      const file = path.join(CACHE_DIR, `seccomp-${key}.bpf`);
      const cached = readCached(file);
      if (cached !== undefined) return cached;
      const bpf = await compile(text).catch(() => undefined);
      if (bpf === undefined || bpf.length === 0 || bpf.length % 8 !== 0) return undefined;
      // The cache is an optimization: worker threads (one pid) and processes write it at once,
      // each through its own temporary name, and a failed write costs only a later compile.
      const tmp = `${file}.${process.pid}.${crypto.randomBytes(6).toString('hex')}.tmp`;
      try {
        fs.mkdirSync(CACHE_DIR, { recursive: true, mode: 0o711 });
        fs.writeFileSync(tmp, bpf, { mode: 0o644 });
        fs.renameSync(tmp, file);
      } catch {
        fs.rmSync(tmp, { force: true });
      }
      return bpf.toString('base64');
    })();
    memo.set(key, hit);
  }
  return hit;
}
