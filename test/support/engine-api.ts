/**
 * Test helpers for the Engine API: a `slipway serve` child process on a private socket, the
 * real docker CLI pointed at it (legacy builder, fresh config), and a busybox store.
 */
import fs from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import net from 'node:net';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { runProcess } from './cli.js';

/** The compiled CLI, next to the compiled tests. */
export const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
/** The docker CLI the tests drive (client only: the engine is Slipway). */
export const DOCKER = process.env['SLIPWAY_TEST_DOCKER'] ?? '/usr/local/bin/docker';

/** Why the docker CLI tests cannot run here, or undefined when they can. */
export function dockerMissing(): string | undefined {
  return existsSync(DOCKER) ? undefined : `${DOCKER} is not installed (docker CLI 28, client only)`;
}

/** The project folder (for scripts/): up from the compiled file, else the working directory. */
function projectRoot(): string {
  for (let dir = path.dirname(fileURLToPath(import.meta.url)); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'scripts', 'make-busybox-rootfs.sh'))) return dir;
  }
  return process.cwd();
}

/** Everything a test made, removed by `cleanup()`. */
const made: string[] = [];
const children = new Set<ChildProcess>();

/** A private temp folder (short path: unix socket paths hold 107 bytes). */
export async function tempDir(prefix: string): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  made.push(dir);
  return dir;
}

/** Kills any server still running and removes the temp folders. */
export async function cleanup(): Promise<void> {
  for (const c of children) c.kill('SIGKILL');
  for (const d of made.splice(0)) await fs.rm(d, { recursive: true, force: true }).catch(() => undefined);
}
// A test run that dies must not leave a server behind.
process.on('exit', () => { for (const c of children) c.kill('SIGKILL'); });

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return runProcess(cmd, args, { env });
}

let baseTar: Promise<string> | undefined;
/** A fresh store root with busybox:latest imported (the rootfs tar is made once per process). */
export async function storeWithBusybox(): Promise<string> {
  baseTar ??= (async () => {
    const out = path.join(await tempDir('sw-base-'), 'busybox.tar');
    execFileSync('bash', [path.join(projectRoot(), 'scripts', 'make-busybox-rootfs.sh'), out], { stdio: ['ignore', 'ignore', 'inherit'] });
    return out;
  })();
  const root = await tempDir('sw-root-');
  const r = await run(process.execPath, [CLI, '--root', root, 'import', '--change', 'CMD ["sh"]', await baseTar, 'busybox:latest'], process.env);
  if (r.code !== 0) throw new Error(`import failed: ${r.stderr}`);
  return root;
}

/** A context folder with the given files. */
export async function makeContext(files: Record<string, string>): Promise<string> {
  const dir = await tempDir('sw-ctx-');
  for (const [name, content] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await fs.writeFile(path.join(dir, name), content);
  }
  return dir;
}

/** A running `slipway serve`. */
export interface Server {
  /** `unix:///…` or `tcp://…`, as printed by the server. */
  host: string;
  /** The unix socket path, for raw HTTP requests. */
  socket?: string;
  proc: ChildProcess;
  output: () => string;
  stop: () => Promise<void>;
}

/** Starts `slipway --root ROOT serve ARGS…` and waits for its "listening on" line. */
export async function startServer(root: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Server> {
  const proc = spawn(process.execPath, [CLI, '--root', root, 'serve', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(proc);
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => { children.delete(proc); resolve(); }));
  const host = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${out}`)), 15_000);
    const check = () => {
      const m = /listening on (\S+)/.exec(out);
      if (m) { clearTimeout(timer); resolve(m[1]!); }
    };
    proc.stdout!.on('data', check);
    proc.once('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited (${code}):\n${out}`)); });
  });
  return {
    host,
    ...(host.startsWith('unix://') ? { socket: host.slice('unix://'.length) } : {}),
    proc,
    output: () => out,
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** Starts `serve` expecting it to fail; resolves with its exit code and output. */
export function serveFails(root: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return run(process.execPath, [CLI, '--root', root, 'serve', ...args], { ...process.env, ...env, SLIPWAY_TOKEN: env['SLIPWAY_TOKEN'] ?? '' });
}

/** An environment for the docker CLI: this server, the legacy builder, a fresh config folder. */
export async function dockerEnv(host: string, config: object = {}): Promise<NodeJS.ProcessEnv> {
  const dir = await tempDir('sw-dcfg-');
  await fs.writeFile(path.join(dir, 'config.json'), JSON.stringify(config));
  return { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: dir, DOCKER_HOST: host, DOCKER_BUILDKIT: '0', DOCKER_CONFIG: dir };
}

/** Runs the docker CLI. */
export function docker(env: NodeJS.ProcessEnv, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return run(DOCKER, args, env);
}

/** Starts the docker CLI without waiting (to kill it mid-build). */
export function dockerChild(env: NodeJS.ProcessEnv, args: string[]): { proc: ChildProcess; output: () => string } {
  const proc = spawn(DOCKER, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return { proc, output: () => out };
}

/**
 * One raw HTTP exchange over a unix socket or TCP (what a malformed or hostile client sends);
 * the request should ask for `Connection: close`, as the answer is read until the server closes.
 */
export function rawHttp(target: { socket?: string; port?: number }, request: string | Buffer): Promise<{ status: number; headers: string; body: string }> {
  return new Promise((resolve, reject) => {
    const c = target.socket ? net.connect(target.socket) : net.connect(target.port!, '127.0.0.1');
    const chunks: Buffer[] = [];
    c.on('data', (d: Buffer) => chunks.push(d));
    c.on('error', () => undefined); // the server may close while we still write
    c.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const sep = text.indexOf('\r\n\r\n');
      const head = sep < 0 ? text : text.slice(0, sep);
      const m = /^HTTP\/1\.1 (\d{3})/.exec(head);
      if (!m) reject(new Error(`no HTTP response: ${JSON.stringify(text.slice(0, 200))}`));
      else resolve({ status: Number(m[1]), headers: head, body: sep < 0 ? '' : text.slice(sep + 4) });
    });
    // write, not end: Node's HTTP server drops a request whose client half-closes at once.
    c.write(request);
  });
}

/** A request with node:http (well-formed; the body may be a stream). */
export function request(socket: string, opts: http.RequestOptions, body?: Buffer | string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: socket, ...opts }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

export { processesMentioning } from './cli.js';

/** Polls `fn` until it returns true or `ms` pass. */
export async function waitFor(fn: () => Promise<boolean> | boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return fn();
}
