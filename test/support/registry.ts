/** Test helpers: a real CNCF distribution registry (Debian's docker-registry) on a free loopback port. */
import fs from 'node:fs/promises';
import { openSync, closeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';

/** A running registry. */
export interface TestRegistry {
  /** `127.0.0.1:PORT` */
  host: string;
  dir: string;
  /** Access-log lines (`"METHOD PATH HTTP/1.1" STATUS`) written since `offset` (from `logOffset()`). */
  requestsSince(offset: number): Promise<Array<{ method: string; path: string; status: number }>>;
  logOffset(): Promise<number>;
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
// A crashed test run must not leave registries behind.
process.on('exit', () => {
  for (const c of running) c.kill('SIGKILL');
});

/** The tools these tests drive; a missing one is reported with the script that installs it. */
export function missingTools(): string[] {
  const need = ['docker-registry', 'skopeo', 'umoci', 'htpasswd'];
  return need.filter((t) => {
    try {
      execFileSync('sh', ['-c', `command -v ${t}`], { stdio: 'ignore' });
      return false;
    } catch {
      return true;
    }
  });
}

/** A TCP port nobody listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

async function waitUntilUp(host: string, child: ChildProcess, errFile: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited ${child.exitCode}: ${await fs.readFile(errFile, 'utf8').catch(() => '')}`);
    try {
      const res = await fetch(`http://${host}/v2/`);
      await res.body?.cancel();
      if (res.status === 200 || res.status === 401) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`docker-registry on ${host} did not come up: ${await fs.readFile(errFile, 'utf8').catch(() => '')}`);
}

/**
 * Starts `docker-registry serve` with a temp storage folder, on a free 127.0.0.1 port; with
 * `htpasswd`, behind Basic auth for that user (bcrypt, as distribution requires).
 */
export async function startRegistry(opts: { htpasswd?: { user: string; password: string } | Array<{ user: string; password: string }> } = {}): Promise<TestRegistry> {
  const missing = missingTools();
  if (missing.length) throw new Error(`missing ${missing.join(', ')}: run scripts/install-deps.sh`);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-registry-'));
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const host = `127.0.0.1:${port}`;
    let auth = '';
    if (opts.htpasswd) {
      const users = Array.isArray(opts.htpasswd) ? opts.htpasswd : [opts.htpasswd];
      const lines = users.map((u) => execFileSync('htpasswd', ['-Bbn', u.user, u.password]).toString().trim());
      await fs.writeFile(path.join(dir, 'htpasswd'), `${lines.join('\n')}\n`);
      auth = `auth:\n  htpasswd:\n    realm: slipway-test\n    path: ${path.join(dir, 'htpasswd')}\n`;
    }
    const config = `version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: ${path.join(dir, 'data')}
  delete:
    enabled: true
http:
  addr: ${host}
${auth}`;
    await fs.writeFile(path.join(dir, 'config.yml'), config);
    const logFile = path.join(dir, 'access.log');
    const errFile = path.join(dir, 'registry.err');
    const outFd = openSync(logFile, 'a');
    const errFd = openSync(errFile, 'a');
    const child = spawn('docker-registry', ['serve', path.join(dir, 'config.yml')], { stdio: ['ignore', outFd, errFd] });
    closeSync(outFd);
    closeSync(errFd);
    running.add(child);
    child.on('exit', () => running.delete(child));
    try {
      await waitUntilUp(host, child, errFile);
    } catch (e) {
      child.kill('SIGKILL');
      if (attempt < 2) continue; // the free port was taken in between: try another
      throw e;
    }
    return {
      host,
      dir,
      logOffset: async () => (await fs.stat(logFile)).size,
      requestsSince: async (offset) => {
        const text = (await fs.readFile(logFile)).subarray(offset).toString('utf8');
        return [...text.matchAll(/"([A-Z]+) (\S+) HTTP\/[\d.]+" (\d{3})/g)].map((m) => ({ method: m[1]!, path: m[2]!, status: Number(m[3]) }));
      },
      stop: async () => {
        if (child.exitCode === null && child.signalCode === null) {
          const exited = new Promise((r) => child.once('exit', r));
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
          await exited;
          clearTimeout(timer);
        }
        await fs.rm(dir, { recursive: true, force: true });
      },
    };
  }
}

/** Blob uploads among logged requests: every POST/PATCH/PUT under `/blobs/uploads/`. */
export function blobUploads(reqs: Array<{ method: string; path: string }>): Array<{ method: string; path: string }> {
  return reqs.filter((r) => r.path.includes('/blobs/uploads/') && ['POST', 'PUT', 'PATCH'].includes(r.method));
}
