/**
 * A lease held across processes through a lock file on the store: whoever creates the file
 * (atomically, complete with its owner record) holds it until it removes it. The record names
 * the owner well enough to tell when it is gone: its pid with the pid's start time (a reused
 * pid is another process), its boot and pid namespace (where the pid means something), and a
 * heartbeat (the file's mtime, refreshed while held) for owners whose pid cannot be checked
 * from here (another machine sharing the store, another pid namespace). A dead owner's lease
 * (kill -9) is taken over; the takeover itself is serialized by a second lock file, so that
 * of several waiters only one removes the dead file and none removes a live one.
 *
 * The lock files are read and written in place (synchronously): a lease is taken for every step
 * a build runs, on the scheduler's thread, where each awaited call was a thread-pool round trip
 * behind whatever else the pool had queued.
 */
import fs from 'node:fs/promises';
import { linkSync, mkdirSync, readFileSync, readlinkSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { SlipwayError } from '../errors.js';

/** Who holds a lease. */
export interface LeaseOwnerJson {
  pid: number;
  /** The process's start time (clock ticks after boot, /proc/PID/stat field 22). */
  start: string;
  boot: string;
  pidns: string;
  host: string;
  token: string;
  acquired: string;
}

/** A held lease. */
export interface HeldLease { release(): Promise<void> }

/** What `acquireLease` needs besides the file. */
export interface LeaseOptions {
  /** Checked while waiting: true when the work the lease guards is done (stop waiting). */
  isDone?: () => Promise<boolean>;
  /** Called once when another live owner makes us wait. */
  onWait?: (owner: LeaseOwnerJson) => void;
  signal?: AbortSignal;
  pollMs?: number;
  /** An owner that is not checkable by pid is dead when its heartbeat is older than this. */
  staleMs?: number;
}

const HEARTBEAT_MS = 2_000;
const STALE_MS = 30_000;

function procStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may hold spaces and parentheses: fields are counted after the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function readOr(read: () => string, fallback: string): string {
  try {
    return read().trim();
  } catch {
    return fallback;
  }
}

/** This process as a lease owner (one token per lease). */
function me(): Omit<LeaseOwnerJson, 'token' | 'acquired'> {
  return {
    pid: process.pid,
    start: procStart(process.pid) ?? '',
    boot: readOr(() => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8'), ''),
    pidns: readOr(() => readlinkSync('/proc/self/ns/pid'), ''),
    host: os.hostname(),
  };
}

const SELF = me();

function readOwner(file: string): { owner: LeaseOwnerJson; mtimeMs: number } | undefined {
  try {
    const text = readFileSync(file, 'utf8');
    const st = statSync(file);
    return { owner: JSON.parse(text) as LeaseOwnerJson, mtimeMs: st.mtimeMs };
  } catch {
    return undefined; // gone meanwhile (released), or not ours to read: try again
  }
}

/** True while the owner can still be working: its process exists (same start), or its heartbeat is fresh. */
export function ownerAlive(owner: LeaseOwnerJson, mtimeMs: number, staleMs = STALE_MS): boolean {
  if (owner.boot !== '' && owner.boot === SELF.boot && owner.pidns === SELF.pidns) {
    const start = procStart(owner.pid);
    return start !== undefined && start === owner.start;
  }
  return Date.now() - mtimeMs < staleMs;
}

/** Creates `file` holding `owner`, atomically and only if it does not exist. */
function createExclusive(file: string, owner: LeaseOwnerJson): boolean {
  const tmp = `${file}.${process.pid}-${owner.token}.tmp`;
  try {
    // Inside the try: a write that fails (a full disk) after creating the file must not leave it.
    writeFileSync(tmp, JSON.stringify(owner), { mode: 0o644 });
    linkSync(tmp, file); // link(2) fails with EEXIST instead of replacing: the create is exclusive
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  } finally {
    rmSync(tmp, { force: true });
  }
}

function newOwner(): LeaseOwnerJson {
  return { ...SELF, token: crypto.randomBytes(8).toString('hex'), acquired: new Date().toISOString() };
}

/** Removes `file` if it still holds `token` (a dead breaker renamed away first, so only that one goes). */
function removeIfToken(file: string, token: string): void {
  const aside = `${file}.${process.pid}-${crypto.randomBytes(4).toString('hex')}.stale`;
  try {
    renameSync(file, aside);
  } catch {
    return; // someone else removed it
  }
  const moved = readOwner(aside);
  if (moved !== undefined && moved.owner.token !== token) tryLink(aside, file); // not the one we meant: put it back
  rmSync(aside, { force: true });
}

/**
 * Removes a dead owner's lease file, if it is still that owner's, while holding the file's
 * breaker lock: only a breaker holder ever removes a lease it does not own.
 */
/** link(2), whose failure (someone else put a lease there meanwhile) is no concern here. */
function tryLink(from: string, to: string): void {
  try {
    linkSync(from, to);
  } catch {
    // left as it is
  }
}

function takeOver(file: string, deadToken: string, staleMs: number): void {
  const breaker = `${file}.break`;
  const mine = newOwner();
  if (!createExclusive(breaker, mine)) {
    const held = readOwner(breaker);
    // A breaker holder killed during its takeover would block everyone: its breaker goes too.
    if (held !== undefined && !ownerAlive(held.owner, held.mtimeMs, staleMs)) removeIfToken(breaker, held.owner.token);
    return;
  }
  try {
    const current = readOwner(file);
    if (current?.owner.token === deadToken) rmSync(file, { force: true });
  } finally {
    rmSync(breaker, { force: true });
  }
}

function hold(file: string, owner: LeaseOwnerJson): HeldLease {
  const beat = setInterval(() => {
    const now = new Date();
    void fs.utimes(file, now, now).catch(() => undefined);
  }, HEARTBEAT_MS);
  beat.unref();
  return {
    release: async () => {
      clearInterval(beat);
      const current = readOwner(file);
      if (current?.owner.token === owner.token) rmSync(file, { force: true });
    },
  };
}

/**
 * Takes the lease `file`, waiting while a live owner holds it and taking it over from a dead
 * one. Resolves to the held lease, or to `{ done: true }` when `isDone` says the guarded work
 * was finished by someone else meanwhile (before or after the lease was free).
 */
export async function acquireLease(file: string, opts: LeaseOptions = {}): Promise<HeldLease | { done: true }> {
  mkdirSync(path.dirname(file), { recursive: true });
  const pollMs = opts.pollMs ?? 100;
  const staleMs = opts.staleMs ?? STALE_MS;
  let waited = false;
  for (;;) {
    if (opts.signal?.aborted) throw new SlipwayError('ERR_CANCELLED', 'build cancelled');
    const owner = newOwner();
    if (createExclusive(file, owner)) {
      // Someone may have finished the work and released between our check and our create.
      if (opts.isDone && (await opts.isDone())) {
        rmSync(file, { force: true });
        return { done: true };
      }
      return hold(file, owner);
    }
    if (opts.isDone && (await opts.isDone())) return { done: true };
    const held = readOwner(file);
    if (held === undefined) continue;
    if (!ownerAlive(held.owner, held.mtimeMs, staleMs)) {
      takeOver(file, held.owner.token, staleMs);
      continue;
    }
    if (!waited) {
      waited = true;
      opts.onWait?.(held.owner);
    }
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
