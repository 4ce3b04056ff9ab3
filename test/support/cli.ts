/** Test helpers: run the compiled CLI, make the busybox base, snapshot a store. */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const ROOTFS_SCRIPT = fileURLToPath(new URL('../../../scripts/make-busybox-rootfs.sh', import.meta.url));

/** Runs `slipway --root ROOT ARGS...`; resolves with exit code and output. */
export function slipway(root: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [CLI, '--root', root, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    c.on('error', reject);
    c.on('exit', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    c.stdin.end(opts.input ?? '');
  });
}

/** Runs any program; resolves with exit code and output once its pipes close. `input` goes to its stdin (else none). */
export function runProcess(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; cwd?: string } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { env: opts.env ?? process.env, ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}), stdio: [opts.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    c.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    c.on('error', reject);
    c.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    if (opts.input !== undefined) c.stdin!.end(opts.input);
  });
}

let baseTar: string | undefined;
/** The busybox rootfs tar, made once per process by the project's script. */
export async function busyboxTar(): Promise<string> {
  if (baseTar) return baseTar;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-base-'));
  const out = path.join(dir, 'busybox-rootfs.tar');
  execFileSync('bash', [ROOTFS_SCRIPT, out], { stdio: ['ignore', 'ignore', 'inherit'] });
  baseTar = out;
  return out;
}

/** A fresh store root with busybox:latest imported. */
export async function storeWithBusybox(): Promise<string> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-root-'));
  const r = await slipway(root, ['import', '--change', 'CMD ["sh"]', await busyboxTar(), 'busybox:latest']);
  if (r.code !== 0) throw new Error(`import failed: ${r.stderr}`);
  return root;
}

/** A context folder with the given files. */
export async function makeContext(files: Record<string, string>): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-ctx-'));
  for (const [name, content] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await fs.writeFile(path.join(dir, name), content);
  }
  return dir;
}

/** Every path below `root` with its type, mode, owner and content hash: equal snapshots mean an unchanged store. */
export async function snapshotTree(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string, rel: string): Promise<void> => {
    for (const name of (await fs.readdir(dir)).sort()) {
      const p = path.join(dir, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = await fs.lstat(p);
      let sig = `${r} ${st.mode.toString(8)} ${st.uid}:${st.gid}`;
      if (st.isFile()) sig += ` ${crypto.createHash('sha256').update(await fs.readFile(p)).digest('hex')}`;
      if (st.isSymbolicLink()) sig += ` -> ${await fs.readlink(p)}`;
      out.push(sig);
      if (st.isDirectory()) await walk(p, r);
    }
  };
  await walk(root, '');
  return out;
}

/** Mount points anywhere on the machine (all processes' mount tables) that mention `needle`. */
export async function mountsMentioning(needle: string): Promise<string[]> {
  const found = new Set<string>();
  for (const pid of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const text = await fs.readFile(`/proc/${pid}/mountinfo`, 'utf8').catch(() => '');
    for (const line of text.split('\n')) if (line.includes(needle)) found.add(line);
  }
  return [...found];
}

/**
 * `slipway build -t TAG CTX` started, returned once the step whose command line carries `marker`
 * runs (seen from outside, by its process). `output()` is what the CLI printed so far.
 * `client` is the program and its first arguments: the Node.js CLI unless given.
 */
export async function buildUntilStepRuns(root: string, ctx: string, tag: string, marker: string, env: NodeJS.ProcessEnv = {}, client: string[] = [process.execPath, CLI]): Promise<{ child: ChildProcess; exited: Promise<number | null>; output: () => string }> {
  const c = spawn(client[0]!, [...client.slice(1), '--root', root, 'build', '-t', tag, ctx], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let out = '';
  c.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  c.stderr.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((resolve) => c.on('exit', (code) => resolve(code)));
  for (let i = 0; i < 200 && (await processesMentioning(marker)).length === 0; i++) await new Promise((r) => setTimeout(r, 50));
  if ((await processesMentioning(marker)).length === 0) throw new Error(`the step never started: ${out}`);
  return { child: c, exited, output: () => out };
}

/** What `probe` lists once it lists nothing, or after `ms` (then what it still lists). */
export async function untilEmpty(probe: () => Promise<string[]>, ms = 10_000): Promise<string[]> {
  let left = await probe();
  for (const end = Date.now() + ms; left.length > 0 && Date.now() < end;) {
    await new Promise((r) => setTimeout(r, 100));
    left = await probe();
  }
  return left;
}

/** Processes whose command line mentions `needle`. */
export async function processesMentioning(needle: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    const cmd = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes(needle)) found.push(`${pid}: ${cmd.replace(/\0/g, ' ')}`);
  }
  return found;
}

/**
 * A PATH of one temporary folder holding symlinks to every program of the system's bin folders
 * except `missing`: the CLI run with it behaves as on a machine without those tools.
 */
export async function pathWithout(missing: string[]): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-path-'));
  for (const bin of ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']) {
    const names = await fs.readdir(bin).catch(() => [] as string[]);
    for (const name of names) {
      if (missing.includes(name)) continue;
      await fs.symlink(path.join(bin, name), path.join(dir, name)).catch(() => undefined); // the first folder wins, as in PATH
    }
  }
  return dir;
}
