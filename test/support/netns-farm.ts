/**
 * Test helper: a farm over several "hosts", each a network namespace. The core namespace holds
 * Redis, the registry and a counting server on a bridge (10.200.0.1/24); each worker host is a
 * namespace joined to the bridge by a veth pair (10.200.0.11, .12, …), and this process' own
 * namespace is joined too (10.200.0.2), as the submitting client. Nothing is shared but the
 * network: each worker has its own --root. `cut(name)` takes a worker's link down (a partition).
 * `stop()` kills every process this helper started (by its own handles) and deletes the
 * namespaces and the client's veth, whatever state they are in.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import http from 'node:http';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { CLI } from './cli.js';

const SUBNET = '10.200.0';
export const CORE_ADDR = `${SUBNET}.1`;
const CLIENT_ADDR = `${SUBNET}.2`;

const COUNTER = `
const http = require('node:http');
const counts = {};
http.createServer((req, res) => {
  if (req.url === '/counts') return res.end(JSON.stringify(counts));
  const m = /^\\/hit\\/([\\w.-]+)$/.exec(req.url);
  if (!m) { res.statusCode = 404; return res.end(); }
  counts[m[1]] = (counts[m[1]] || 0) + 1;
  res.end(counts[m[1]] === 1 ? 'slow' : 'fast');
}).listen(8080, process.argv[1], () => console.log('ready'));
`;

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

const quiet = (fn: () => void) => { try { fn(); } catch { /* already gone */ } };

export interface NetnsWorker { name: string; addr: string; root: string; child: ChildProcess; output: () => string; exited: Promise<unknown> }

export class NetnsFarm {
  readonly tag = crypto.randomBytes(2).toString('hex');
  readonly core = `slw-mh-${this.tag}-core`;
  readonly workers = new Map<string, NetnsWorker>();
  private readonly procs = new Set<ChildProcess>();
  private readonly namespaces: string[] = [];
  private readonly hostLink = `slwmh${this.tag}c`;
  private dir = '';
  readonly redisUrl = `redis://${CORE_ADDR}:6379`;
  readonly registry = `${CORE_ADDR}:5000`;
  readonly countUrl = `http://${CORE_ADDR}:8080`;

  /** Joins namespace `ns` (or this one, for undefined) to the core's bridge as `addr`. */
  private attach(ns: string | undefined, link: string, addr: string): void {
    const peer = `${link}p`;
    ip('link', 'add', link, 'type', 'veth', 'peer', 'name', peer);
    ip('link', 'set', peer, 'netns', this.core);
    ip('-n', this.core, 'link', 'set', peer, 'master', 'br0', 'up');
    if (ns) ip('link', 'set', link, 'netns', ns);
    const inNs = ns ? ['-n', ns] : [];
    ip(...inNs, 'addr', 'add', `${addr}/24`, 'dev', link);
    ip(...inNs, 'link', 'set', link, 'up');
    if (ns) ip('-n', ns, 'link', 'set', 'lo', 'up');
  }

  /** The core host: bridge, Redis (AOF), registry and counting server. */
  async start(): Promise<void> {
    this.dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-netns-farm-'));
    ip('netns', 'add', this.core);
    this.namespaces.push(this.core);
    ip('-n', this.core, 'link', 'add', 'br0', 'type', 'bridge');
    ip('-n', this.core, 'addr', 'add', `${CORE_ADDR}/24`, 'dev', 'br0');
    ip('-n', this.core, 'link', 'set', 'br0', 'up');
    ip('-n', this.core, 'link', 'set', 'lo', 'up');
    this.attach(undefined, this.hostLink, CLIENT_ADDR);
    await fs.mkdir(path.join(this.dir, 'redis'));
    this.spawnIn(this.core, ['redis-server', '--bind', CORE_ADDR, '--port', '6379', '--dir', path.join(this.dir, 'redis'), '--save', '', '--appendonly', 'yes', '--protected-mode', 'no']);
    const config = `version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: ${path.join(this.dir, 'registry')}\nhttp:\n  addr: ${this.registry}\n`;
    await fs.writeFile(path.join(this.dir, 'registry.yml'), config);
    this.spawnIn(this.core, ['docker-registry', 'serve', path.join(this.dir, 'registry.yml')]);
    this.spawnIn(this.core, [process.execPath, '-e', COUNTER, CORE_ADDR]);
    await this.waitFor(async () => (await fetch(`http://${this.registry}/v2/`)).status === 200, 'registry');
    await this.waitFor(async () => (await fetch(`${this.countUrl}/counts`)).status === 200, 'counting server');
    await this.waitFor(async () => execFileSync('redis-cli', ['-h', CORE_ADDR, 'ping']).toString().trim() === 'PONG', 'redis');
  }

  // nsenter joins the network namespace only: `ip netns exec` also mounts a fresh /sys, which
  // hides the cgroup hierarchy the sandbox's limits need.
  private spawnIn(ns: string, argv: string[]): ChildProcess {
    const child = spawn('nsenter', [`--net=/run/netns/${ns}`, '--', ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.procs.add(child);
    child.on('exit', () => this.procs.delete(child));
    return child;
  }

  private async waitFor(probe: () => Promise<boolean>, what: string): Promise<void> {
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (await probe().catch(() => false)) return;
      if (Date.now() > deadline) throw new Error(`${what} did not come up in ${this.core}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** A worker host: its own namespace, address and --root; resolves once the worker waits for builds. */
  async startWorker(name: string, index: number, extra: string[] = []): Promise<NetnsWorker> {
    const ns = `slw-mh-${this.tag}-${name}`;
    if (!this.namespaces.includes(ns)) {
      ip('netns', 'add', ns);
      this.namespaces.push(ns);
      this.attach(ns, this.workerLink(name), `${SUBNET}.${10 + index}`);
    }
    const root = path.join(this.dir, `root-${name}`);
    const child = this.spawnIn(ns, [process.execPath, CLI, '--root', root, 'worker', '--redis', this.redisUrl, '--registry', this.registry, '--name', name, ...extra]);
    let out = '';
    const exited = new Promise((r) => child.on('exit', r));
    await new Promise<void>((resolve, reject) => {
      const on = (d: Buffer) => {
        out += d.toString();
        if (out.includes('waiting for builds')) resolve();
      };
      child.stdout!.on('data', on);
      child.stderr!.on('data', on);
      void exited.then(() => reject(new Error(`worker ${name} exited before it was ready:\n${out}`)));
    });
    const w = { name, addr: `${SUBNET}.${10 + index}`, root, child, output: () => out, exited };
    this.workers.set(name, w);
    return w;
  }

  /** Takes a worker host's link down (true) or up again (false). */
  cut(name: string, down: boolean): void {
    ip('-n', `slw-mh-${this.tag}-${name}`, 'link', 'set', this.workerLink(name), down ? 'down' : 'up');
  }

  /** A worker host's link (unique on this machine while it is made in this namespace). */
  private workerLink(name: string): string {
    return `slwmh${this.tag}${name}`.slice(0, 14);
  }

  /** How many times each `/hit/NAME` was requested (RUN steps report themselves there). */
  counts(): Promise<Record<string, number>> {
    return new Promise((resolve, reject) => {
      http.get(`${this.countUrl}/counts`, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve(JSON.parse(body) as Record<string, number>));
      }).on('error', reject);
    });
  }

  async stop(): Promise<void> {
    if (process.env['SLIPWAY_TEST_LOGS']) for (const w of this.workers.values()) process.stderr.write(`--- ${w.name}\n${w.output()}\n`);
    const all = [...this.procs];
    for (const c of all) c.kill('SIGKILL');
    await Promise.all(all.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once('exit', r)) : undefined)));
    for (const ns of this.namespaces.reverse()) quiet(() => ip('netns', 'del', ns));
    quiet(() => ip('link', 'del', this.hostLink));
    if (this.dir) await fs.rm(this.dir, { recursive: true, force: true });
  }
}
