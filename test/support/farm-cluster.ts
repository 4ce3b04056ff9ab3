/**
 * Test helper: a farm with the access control of a shared one. A private Redis whose workers
 * connect as an ACL user limited to the farm's prefix (`~slipway:*`, no dangerous commands), a
 * registry behind htpasswd where every worker and the API server log in as themselves, busybox
 * pushed to the operator's shared namespace (`public/`), worker processes (each its own --root
 * and config folder) and `slipway serve` with a tenants file on a TCP port. Every process is
 * killed by `stop()`, and on exit whatever happened.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { slipway, storeWithBusybox, CLI } from './cli.js';
import { startRegistry, freePort, type TestRegistry } from './registry.js';
import { startRedis, type TestRedis } from './redis.js';

export interface FarmProc { name: string; root: string; config: string; child: ChildProcess; output: () => string; exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> }

const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

export const SHARED_TENANT = 'public';
const WORKER_USER = 'slipway-farm';

/** The ACL of the farm's Redis user: its keys and channels only, nothing dangerous. */
export const FARM_ACL = ['resetkeys', '~slipway:*', 'resetchannels', '&slipway:*', '+@all', '-@dangerous', '+info', '+client|setname', '+client|getname', '+client|list', '+client|id'];

export class FarmCluster {
  readonly workers = new Map<string, FarmProc>();
  readonly retired: FarmProc[] = [];
  readonly temps: string[] = [];
  serve: (FarmProc & { url: string; tokensFile: string }) | undefined;
  private readonly registryUsers = new Map<string, string>();

  private constructor(readonly redis: TestRedis, readonly reg: TestRegistry, readonly workerRedisUrl: string, readonly seed: string) {}

  static async start(names: string[], workerArgs: string[] = []): Promise<FarmCluster> {
    const users = ['seed', 'serve', ...names].map((user) => ({ user, password: crypto.randomBytes(12).toString('hex') }));
    const [redis, reg] = await Promise.all([startRedis(), startRegistry({ htpasswd: users })]);
    const aclPass = crypto.randomBytes(16).toString('hex');
    execFileSync('redis-cli', ['-p', String(redis.port), 'ACL', 'SETUSER', WORKER_USER, 'on', `>${aclPass}`, ...FARM_ACL]);
    const seed = await storeWithBusybox();
    const c = new FarmCluster(redis, reg, `redis://${WORKER_USER}:${aclPass}@127.0.0.1:${redis.port}`, seed);
    c.temps.push(seed);
    for (const u of users) c.registryUsers.set(u.user, u.password);
    const seedConfig = await c.login('seed');
    for (const args of [['tag', 'busybox', `${reg.host}/${SHARED_TENANT}/busybox`], ['push', `${reg.host}/${SHARED_TENANT}/busybox`], ['tag', 'busybox', `${reg.host}/busybox`], ['push', `${reg.host}/busybox`]]) {
      const r = await slipway(seed, args, { env: { ...process.env, SLIPWAY_CONFIG: seedConfig } });
      if (r.code !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
    }
    await Promise.all(names.map((n) => c.startWorker(n, workerArgs)));
    return c;
  }

  /** The registry credentials of one of the cluster's users (the operator's submits use `seed`'s). */
  credentials(user: string): { username: string; password: string } {
    return { username: user, password: this.registryUsers.get(user)! };
  }

  async tmpDir(label: string): Promise<string> {
    const d = await fs.mkdtemp(path.join(os.tmpdir(), `slipway-cluster-${label}-`));
    this.temps.push(d);
    return d;
  }

  /** A config folder where `user` is logged in to the farm's registry. */
  async login(user: string): Promise<string> {
    const config = await this.tmpDir(`config-${user}`);
    const r = await slipway(this.seed, ['login', '-u', user, '--password-stdin', this.reg.host], { input: this.registryUsers.get(user)!, env: { ...process.env, SLIPWAY_CONFIG: config } });
    if (r.code !== 0) throw new Error(`login ${user}: ${r.stderr}`);
    return config;
  }

  private spawnProc(name: string, root: string, config: string, args: string[], ready: RegExp): Promise<FarmProc> {
    const child = spawn(process.execPath, [CLI, '--root', root, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SLIPWAY_CONFIG: config } });
    children.add(child);
    let out = '';
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('exit', (code, signal) => r({ code, signal })));
    return new Promise<FarmProc>((resolve, reject) => {
      const on = (d: Buffer) => {
        out += d.toString();
        if (ready.test(out)) resolve({ name, root, config, child, output: () => out, exited });
      };
      child.stdout!.on('data', on);
      child.stderr!.on('data', on);
      void exited.then(({ code, signal }) => reject(new Error(`${name} exited (${code ?? signal}) before it was ready:\n${out}`)));
    });
  }

  /** Spawns `slipway worker` (registry user = its name) and resolves once it waits for builds. */
  async startWorker(name: string, extra: string[] = [], root?: string): Promise<FarmProc> {
    if (!this.registryUsers.has(name)) throw new Error(`no registry user ${name}`);
    const w = await this.spawnProc(name, root ?? await this.tmpDir(`root-${name}`), await this.login(name), [
      'worker', '--redis', this.workerRedisUrl, '--registry', this.reg.host, '--name', name, '--shared-tenant', SHARED_TENANT, ...extra,
    ], /waiting for builds/);
    this.workers.set(name, w);
    return w;
  }

  /** Starts `slipway serve` on a TCP port with these tenants ("TENANT TOKEN [operator]" lines). */
  async startServe(lines: string[], extra: string[] = []): Promise<FarmProc & { url: string; tokensFile: string }> {
    const dir = await this.tmpDir('serve');
    const tokensFile = path.join(dir, 'tenants');
    await fs.writeFile(tokensFile, `${lines.join('\n')}\n`, { mode: 0o600 });
    const port = await freePort();
    const p = await this.spawnProc('serve', path.join(dir, 'root'), await this.login('serve'), [
      'serve', '-H', `tcp://127.0.0.1:${port}`, '--tenants-file', tokensFile, '--redis', this.workerRedisUrl, '--registry', this.reg.host, ...extra,
    ], /listening on tcp/);
    this.serve = { ...p, url: `http://127.0.0.1:${port}`, tokensFile };
    return this.serve;
  }

  /** SIGKILLs every process, stops Redis and the registry, removes the folders. */
  async stop(): Promise<void> {
    if (process.env['SLIPWAY_TEST_LOGS']) for (const w of [...this.retired, ...this.workers.values()]) process.stderr.write(`--- ${w.name}\n${w.output()}\n`);
    const procs = [...this.workers.values(), ...this.retired, ...(this.serve ? [this.serve] : [])];
    for (const p of procs) {
      if (p.child.exitCode === null && p.child.signalCode === null) {
        p.child.kill('SIGCONT');
        p.child.kill('SIGKILL');
      }
    }
    await Promise.all(procs.map((p) => p.exited));
    await this.redis.stop();
    await this.reg.stop();
    for (const d of this.temps) await fs.rm(d, { recursive: true, force: true });
  }
}
