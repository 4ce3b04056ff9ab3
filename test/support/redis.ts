/** Test helper: a private redis-server (Debian's) on a free loopback port, never the system one. */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import { freePort } from './registry.js';

export interface TestRedis {
  url: string;
  port: number;
  /** Its data folder (the append-only file: every write it was sent). */
  dir: string;
  /** Kills the server (SIGKILL) and keeps its data folder, for a restart. */
  kill(): Promise<void>;
  /** Starts it again on the same port (with the data it had saved via AOF). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

export async function waitPort(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.end();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`redis on ${port} did not come up`);
}

/** `extraArgs` go after the defaults (e.g. `--replicaof 127.0.0.1 PORT` for a replica). */
export async function startRedis(extraArgs: string[] = []): Promise<TestRedis> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-redis-'));
  const port = await freePort();
  let child: ChildProcess | undefined;
  const launch = async () => {
    // AOF with fsync on every write: a SIGKILL loses nothing, as a production farm would configure it.
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--protected-mode', 'no', ...extraArgs], { stdio: 'ignore' });
    children.add(child);
    const c = child;
    c.on('exit', () => children.delete(c));
    await waitPort(port);
  };
  const kill = async () => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await exited;
  };
  await launch();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    kill,
    restart: launch,
    stop: async () => {
      await kill();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A Redis Sentinel (redis-server in sentinel mode, no extra package) watching `master` as
 * `name`, with quorum 1 and a 1 s down-after: a killed master is failed over within seconds.
 */
export async function startSentinel(name: string, master: TestRedis): Promise<{ port: number; stop(): Promise<void> }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-sentinel-'));
  const port = await freePort();
  const conf = path.join(dir, 'sentinel.conf');
  await fs.writeFile(conf, [
    `port ${port}`, 'bind 127.0.0.1', 'protected-mode no', `dir ${dir}`,
    `sentinel monitor ${name} 127.0.0.1 ${master.port} 1`, `sentinel down-after-milliseconds ${name} 1000`,
    `sentinel failover-timeout ${name} 5000`, `sentinel parallel-syncs ${name} 1`, '',
  ].join('\n'));
  const child = spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' });
  children.add(child);
  child.on('exit', () => children.delete(child));
  await waitPort(port);
  return {
    port,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGKILL');
        await exited;
      }
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}
