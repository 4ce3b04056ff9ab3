import fs from 'node:fs/promises';
import fsSync, { constants } from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';

/**
 * Writes a file atomically: a temp file in the same folder, fsync, rename. A reader sees the
 * old content or the new, never a torn write, even after kill -9.
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array, mode = 0o644, opts: { fsync?: boolean } = {}): Promise<void> {
  await mkdirAll(path.dirname(file));
  const tmp = `${file}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  const fh = await fs.open(tmp, 'w', mode);
  try {
    try {
      await fh.writeFile(data);
      // fsync guards against power loss; rename alone already guards against kill -9. Derived,
      // rebuildable files (records, markers, stat cache) skip it.
      if (opts.fsync !== false) await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.rename(tmp, file);
  } catch (e) {
    // A full disk must not leave the half-written temp file behind.
    await fs.rm(tmp, { force: true });
    throw e;
  }
}

/**
 * `mkdir -p`. Node's recursive mkdir reports ENOENT for the whole path when a component
 * cannot be made (a read-only filesystem, say); then each missing component is made on its
 * own, so the error names the folder that failed and the real cause (EROFS, EACCES, ENOSPC).
 */
export async function mkdirAll(dir: string, mode = 0o755): Promise<void> {
  try {
    await fs.mkdir(dir, { recursive: true, mode });
    return;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const missing: string[] = [];
  for (let d = path.resolve(dir); !(await exists(d)); d = path.dirname(d)) missing.unshift(d);
  for (const d of missing) await fs.mkdir(d, { mode });
}

/**
 * `mkdir -p` whose new folders get exactly `mode`, whatever the process's umask (a worker
 * thread cannot set one). Folders that existed are left as they are. Synchronous: a few calls,
 * made where a layer is written (a COPY's folders, an archive's), where each awaited one was a
 * thread-pool round trip.
 */
export function mkdirpExact(dir: string, mode: number): void {
  const first = fsSync.mkdirSync(dir, { recursive: true, mode });
  if (first === undefined) return;
  for (let d = path.resolve(dir); d.length >= first.length; d = path.dirname(d)) fsSync.chmodSync(d, mode);
}

/** Reads and parses a JSON file; undefined when it does not exist. */
export async function readJsonIfExists<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await fs.readFile(file, 'utf8')) as T;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/** True when the path exists (without following a final symlink). */
export async function exists(p: string): Promise<boolean> {
  try {
    await fs.lstat(p);
    return true;
  } catch {
    return false;
  }
}

/** True while a process with this pid exists (EPERM means it exists but is not ours). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Runs `fn` while holding an exclusive lock file (O_EXCL create). A lock whose holder process
 * is gone (kill -9) is broken, so a crash never wedges the store.
 */
export async function withLock<T>(lockFile: string, fn: () => Promise<T>): Promise<T> {
  await mkdirAll(path.dirname(lockFile));
  let delay = 2;
  for (;;) {
    try {
      const fh = await fs.open(lockFile, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600);
      await fh.writeFile(String(process.pid));
      await fh.close();
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const holder = Number.parseInt(await fs.readFile(lockFile, 'utf8').catch(() => ''), 10);
      const age = Date.now() - ((await fs.stat(lockFile).catch(() => undefined))?.mtimeMs ?? Date.now());
      // A lock with no pid written (its holder died between create and write) is stale after a while.
      const dead = Number.isInteger(holder) && holder > 0 ? !pidAlive(holder) : age > 2000;
      if (dead) {
        // The holder died: take the stale lock away atomically (rename wins for one process only).
        const stale = `${lockFile}.stale-${process.pid}`;
        await fs.rename(lockFile, stale).then(() => fs.rm(stale, { force: true }), () => undefined);
        continue;
      }
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 50);
    }
  }
  try {
    return await fn();
  } finally {
    await fs.rm(lockFile, { force: true });
  }
}

/** sha256 hex of a string or bytes. */
export function sha256Hex(data: string | Uint8Array): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}
