/**
 * The default network's daemon (native/netd.c): one per thread that runs steps and per domain
 * (a store: one tenant's, on a farm worker), started on the first step that needs it and kept
 * until the thread or process ends. Each step's network
 * namespace gets its own tap and its own user-mode stack in it; the shim hands the tap over
 * (`--netd NAME`). Started through the spawner, whose pipe on its stdin it watches: it exits
 * when the spawner does, which exits with this process.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { threadId } from 'node:worker_threads';
import { SlipwayError } from '../errors.js';
import { spawnViaSpawner, type SpawnedProcess } from './spawner.js';

/** The unprivileged ids the daemon drops to once it listens (nobody). */
const NETD_UID = 65534;

interface Running { name: string; proc: SpawnedProcess }

/** This thread's daemons, by domain, from their start until they exit. */
const running = new Map<string, Promise<Running>>();
/** The names of those that are up: a step's lookup once its daemon runs, without a wait. */
const upNames = new Map<string, string>();

/** The compiled daemon (native/netd.c, built by `npm run build`). */
export function netdPath(): string {
  const p = fileURLToPath(new URL('../../native/slipway-netd', import.meta.url));
  if (!fs.existsSync(p)) {
    throw new SlipwayError('ERR_SANDBOX', `${p} is missing: run "npm run build" (it compiles native/netd.c; needs the Debian packages gcc and libslirp-dev)`);
  }
  return p;
}

function start(domain: string): Promise<Running> {
  const name = `slipway-netd-${process.pid}-${threadId}-${crypto.randomBytes(6).toString('hex')}`;
  const argv = [netdPath(), '--socket', name, '--uid', String(NETD_UID), '--gid', String(NETD_UID)];
  const started: Promise<Running> = new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    let proc: SpawnedProcess | undefined;
    let ready = false;
    // A daemon that is gone is started again by the next step that needs one.
    const forget = () => {
      if (running.get(domain) !== started) return;
      running.delete(domain);
      upNames.delete(domain);
    };
    // "ready" may come before or after the spawner reports the process: whichever is last resolves.
    const settle = () => {
      if (ready || proc === undefined || !out.includes('ready\n')) return;
      ready = true;
      if (running.get(domain) === started) upNames.set(domain, name);
      resolve({ name, proc });
    };
    spawnViaSpawner(argv, {
      holdStdin: true,
      ref: false,
      onStdout: (b) => { out += b.toString(); settle(); },
      onStderr: (b) => { err += b.toString(); },
    }).then((p) => {
      proc = p;
      settle();
      void p.exited.then((code) => {
        forget();
        // After "ready" this changes nothing: the promise has resolved.
        reject(new SlipwayError('ERR_SANDBOX', `the network daemon exited with ${code}: ${err.trim() || 'no message'}`));
      }, forget);
    }, (e: unknown) => { forget(); reject(e); });
  });
  return started;
}

/** The abstract socket name of this thread's daemon for `domain`, started if it is not running. */
export async function netdName(domain: string): Promise<string> {
  const up = upNames.get(domain);
  if (up !== undefined) return up;
  let r = running.get(domain);
  if (r === undefined) {
    r = start(domain);
    running.set(domain, r);
  }
  // The daemon and its pipes are unref'd: a caller with nothing else alive must not exit while it waits.
  const keep = setInterval(() => undefined, 1000);
  try {
    return (await r).name;
  } finally {
    clearInterval(keep);
  }
}

/** Stops this thread's daemons (tests, and servers shutting down); the next step starts another. */
export function stopNetd(): void {
  for (const r of running.values()) void r.then((x) => x.proc.kill('SIGKILL'), () => undefined);
  running.clear();
  upNames.clear();
}
