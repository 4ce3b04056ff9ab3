/**
 * Network namespaces made ahead of the steps that use them. slirp4netns takes longer to start
 * than the rest of a step's sandbox (and a user and network namespace pair costs a fork and a
 * few milliseconds too), so when a step with the default network (or `none`) starts, this
 * process prepares the next one's in the background (while the step runs): a `--hold` shim makes a user and a network
 * namespace, starts slirp4netns on it, and keeps them until it is released. Each prepared pair
 * serves exactly one step and is then thrown away. An unused one is released after a while; all
 * of them die with this process (or thread), as every shim does.
 */
import path from 'node:path';
import fs from 'node:fs';
import os from 'node:os';
import type { IdMapping } from './userns.js';
import { spawnViaSpawner, type SpawnedProcess } from './spawner.js';

/** A prepared pair: join /proc/`pid`/ns/user and /proc/`pid`/ns/net. */
export interface WarmNetwork {
  pid: number;
  release(): void;
}

const IDLE_MS = 30_000;

interface Entry {
  key: string;
  ready: Promise<WarmNetwork | undefined>;
}

/** What is prepared, one per kind (network mode and mapping). */
const pending = new Map<string, Entry>();

/** A --hold shim's arguments: slirp4netns's path for the default network, undefined for `none`. */
function holdArgs(m: IdMapping | undefined, slirp: string | undefined, nsdir: string | undefined): string[] {
  const a = ['--hold', '--netns', slirp !== undefined ? 'slirp' : 'none', '--status-fd', '3'];
  if (slirp !== undefined) a.push('--slirp', slirp);
  if (nsdir !== undefined) a.push('--nsdir', nsdir);
  if (m) a.push('--idmap', `${m.uid.host}:${Math.min(m.uid.count, m.gid.count)}`, '--gidmap', String(m.gid.host));
  return a;
}

let swept = false;

/** Folders of prepared pairs whose process died without its exit handler (kill -9) are removed once per process. */
function sweepDead(): void {
  if (swept) return;
  swept = true;
  for (const name of fs.readdirSync(os.tmpdir())) {
    const pid = /^slipway-net-(\d+)-/.exec(name)?.[1];
    if (pid === undefined || fs.existsSync(`/proc/${pid}`)) continue;
    fs.rmSync(path.join(os.tmpdir(), name), { recursive: true, force: true });
  }
}

/** Starts a --hold shim (through the spawner); resolves once its namespaces and slirp4netns are up (undefined if they failed). */
function prepare(shim: string, slirp: string | undefined, m: IdMapping | undefined): Promise<WarmNetwork | undefined> {
  // Its own small folder for slirp4netns's log, removed on release (`none` has no log).
  sweepDead();
  const nsdir = slirp !== undefined ? fs.mkdtempSync(path.join(os.tmpdir(), `slipway-net-${process.pid}-`)) : undefined;
  // An unused pair's folder goes with this process (or thread) too, not only with its idle timer.
  const onExit = () => { if (nsdir !== undefined) fs.rmSync(nsdir, { recursive: true, force: true }); };
  process.once('exit', onExit);
  let proc: SpawnedProcess | undefined;
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    clearTimeout(idle);
    proc?.kill('SIGKILL');
    onExit();
    process.off('exit', onExit);
  };
  const idle = setTimeout(release, IDLE_MS);
  idle.unref();
  return new Promise((resolve) => {
    let buf = '';
    const gone = () => { release(); resolve(undefined); };
    // Its stdin stays open in the spawner until it exits: the shim holds the namespaces until then.
    spawnViaSpawner([shim, ...holdArgs(m, slirp, nsdir)], {
      holdStdin: true,
      ref: false,
      onFd3: (b) => {
        buf += b.toString();
        const m2 = /^ready (\d+)$/m.exec(buf);
        if (m2) resolve({ pid: Number(m2[1]), release });
      },
    }).then((p) => {
      proc = p;
      if (released) p.kill('SIGKILL');
      p.exited.then(gone, gone);
    }, gone);
  });
}

function keyOf(slirp: string | undefined, m: IdMapping | undefined): string {
  return JSON.stringify([slirp !== undefined ? 'default' : 'none', m ?? null]);
}

/**
 * The prepared namespaces for a step with the default network (`slirp` its path) or `none`
 * (undefined) and mapping `m`, when some are ready or on their way; undefined: the step makes
 * its own.
 */
export async function takeWarmNetwork(slirp: string | undefined, m: IdMapping | undefined): Promise<WarmNetwork | undefined> {
  const key = keyOf(slirp, m);
  const mine = pending.get(key);
  if (mine === undefined) return undefined;
  pending.delete(key);
  // The holder, its pipe and its timer are unref'd: a caller with nothing else alive must not exit while it waits.
  const keep = setInterval(() => undefined, 1000);
  const w = await mine.ready.finally(() => clearInterval(keep));
  // A holder that died meanwhile (killed, slirp gone) is useless: check it still holds them.
  if (w && !fs.existsSync(`/proc/${w.pid}/ns/net`)) {
    w.release();
    return undefined;
  }
  return w;
}

/**
 * Prepares namespaces for the next step of this kind, unless some are already on their way.
 * Called as a step starts: the spawner starts the --hold shim without blocking this thread, and
 * the namespaces (and slirp4netns) come up while the step runs.
 */
export function prewarmNetwork(shim: string, slirp: string | undefined, m: IdMapping | undefined): void {
  const key = keyOf(slirp, m);
  if (pending.has(key)) return;
  pending.set(key, { key, ready: prepare(shim, slirp, m) });
}

/** Releases whatever is prepared (tests, and servers shutting down). */
export function releaseWarmNetworks(): void {
  for (const e of pending.values()) void e.ready.then((w) => w?.release());
  pending.clear();
}
