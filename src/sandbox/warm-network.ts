/**
 * Network namespaces made ahead of the steps that use them. A user and network namespace pair
 * costs a fork and a few milliseconds (and the default network a tap handed to the network
 * daemon), so when a step with the default network (or `none`) starts, this process prepares
 * the next one's in the background (while the step runs): a `--hold` shim makes a user and a
 * network namespace, gives it its network, and keeps them until it is released. Each prepared
 * pair serves exactly one step and is then thrown away. An unused one is released after a
 * while; all of them die with this process (or thread), as every shim does.
 */
import fs from 'node:fs';
import type { IdMapping } from './userns.js';
import { spawnViaSpawner, type SpawnedProcess } from './spawner.js';
import { stopNetd } from './netd.js';

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

/** A --hold shim's arguments: the network daemon's name for the default network, undefined for `none`. */
function holdArgs(m: IdMapping | undefined, netd: string | undefined): string[] {
  const a = ['--hold', '--netns', netd !== undefined ? 'slirp' : 'none', '--status-fd', '3'];
  if (netd !== undefined) a.push('--netd', netd);
  if (m) a.push('--idmap', `${m.uid.host}:${Math.min(m.uid.count, m.gid.count)}`, '--gidmap', String(m.gid.host));
  return a;
}

/** Starts a --hold shim (through the spawner); resolves once its namespaces and network are up (undefined if they failed). */
function prepare(shim: string, netd: string | undefined, m: IdMapping | undefined): Promise<WarmNetwork | undefined> {
  let proc: SpawnedProcess | undefined;
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    clearTimeout(idle);
    proc?.kill('SIGKILL');
  };
  const idle = setTimeout(release, IDLE_MS);
  idle.unref();
  return new Promise((resolve) => {
    let buf = '';
    const gone = () => { release(); resolve(undefined); };
    // Its stdin stays open in the spawner until it exits: the shim holds the namespaces until then.
    spawnViaSpawner([shim, ...holdArgs(m, netd)], {
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

function keyOf(netd: string | undefined, m: IdMapping | undefined): string {
  return JSON.stringify([netd ?? 'none', m ?? null]);
}

/**
 * The prepared namespaces for a step with the default network (`netd` the network daemon's name) or `none`
 * (undefined) and mapping `m`, when some are ready or on their way; undefined: the step makes
 * its own.
 */
export async function takeWarmNetwork(netd: string | undefined, m: IdMapping | undefined): Promise<WarmNetwork | undefined> {
  const key = keyOf(netd, m);
  const mine = pending.get(key);
  if (mine === undefined) return undefined;
  pending.delete(key);
  // The holder, its pipe and its timer are unref'd: a caller with nothing else alive must not exit while it waits.
  const keep = setInterval(() => undefined, 1000);
  const w = await mine.ready.finally(() => clearInterval(keep));
  // A holder that died meanwhile (killed, its network gone) is useless: check it still holds them.
  if (w && !fs.existsSync(`/proc/${w.pid}/ns/net`)) {
    w.release();
    return undefined;
  }
  return w;
}

/**
 * Prepares namespaces for the next step of this kind, unless some are already on their way.
 * Called as a step starts: the spawner starts the --hold shim without blocking this thread, and
 * the namespaces (and their network) come up while the step runs.
 */
export function prewarmNetwork(shim: string, netd: string | undefined, m: IdMapping | undefined): void {
  const key = keyOf(netd, m);
  if (pending.has(key)) return;
  pending.set(key, { key, ready: prepare(shim, netd, m) });
}

/** Releases whatever is prepared (tests, and servers shutting down). */
export function releaseWarmNetworks(): void {
  for (const e of pending.values()) void e.ready.then((w) => w?.release());
  pending.clear();
  stopNetd();
}
