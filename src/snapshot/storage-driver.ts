/**
 * Which storage driver a build uses when none was asked for: overlay where an overlay mount
 * works on the store's filesystem, vfs otherwise. Probed once per process and folder.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { StorageDriver } from './run-step.js';
import type { StoreLayout } from '../store/layout.js';
import { ensureStore } from '../store/graph.js';
import { writeFileAtomic } from '../fs.js';

/** The choice, and for vfs why overlay could not be used (one line). */
export interface DriverChoice {
  driver: StorageDriver;
  reason?: string;
}

const probes = new Map<string, Promise<DriverChoice>>();

/**
 * Mounts a throwaway overlay in a temp folder under `tmpRoot` (use the store's `graph/_tmp`:
 * overlay's support depends on the upper dir's filesystem) inside a private mount namespace
 * that vanishes with the mount command, so nothing is ever left mounted. A failing mount
 * (EINVAL, ENODEV, EPERM…) means vfs; a failing unshare says nothing about overlay (the
 * sandbox needs it either way and reports that itself), so it keeps overlay.
 */
export function detectStorageDriver(tmpRoot: string = os.tmpdir()): Promise<DriverChoice> {
  const key = path.resolve(tmpRoot);
  let p = probes.get(key);
  if (p === undefined) {
    p = probeOverlay(key);
    probes.set(key, p);
  }
  return p;
}

async function probeOverlay(tmpRoot: string): Promise<DriverChoice> {
  await fs.mkdir(tmpRoot, { recursive: true, mode: 0o700 });
  // Named like the store's other temp folders (`<pid>-<label>-…`), so a crash gets swept.
  const dir = await fs.mkdtemp(path.join(tmpRoot, `${process.pid}-overlay-probe-`));
  try {
    for (const d of ['l', 'u', 'w', 'm']) await fs.mkdir(path.join(dir, d));
    const r = await tryCommand('unshare', [
      '--mount', '--propagation', 'private', '--', 'mount', '-t', 'overlay', 'overlay',
      '-o', 'lowerdir=l,upperdir=u,workdir=w', 'm',
    ], dir);
    if (r.ok || /^unshare:/m.test(r.stderr) || r.spawnError) return { driver: 'overlay' };
    return { driver: 'vfs', reason: r.stderr.replace(/\s+/g, ' ').trim() || `mount exited with ${r.code}` };
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

function tryCommand(cmd: string, args: string[], cwd: string): Promise<{ ok: boolean; code: number | null; stderr: string; spawnError: boolean }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', () => resolve({ ok: false, code: null, stderr, spawnError: true }));
    child.on('close', (code) => resolve({ ok: code === 0, code, stderr, spawnError: false }));
  });
}

/** Where probe answers are remembered: outside every store (a memo is no image state), cleared at boot. */
const MEMO_DIR = process.env['SLIPWAY_RUN_DIR'] ?? '/run/slipway';

/**
 * The driver for builds in `layout`'s store, probed once per kernel and filesystem: the answer is
 * kept in `/run/slipway/storage-driver-<dev>.json`, never in the store, so a build refused
 * before its first step leaves the store exactly as it was. `warn` hears why vfs was chosen.
 */
export async function memoizedStorageDriver(layout: StoreLayout, warn: (line: string) => void): Promise<StorageDriver> {
  const dev = await fs.stat(layout.graph).then((st) => st.dev, () => undefined);
  const memo = dev === undefined ? undefined : path.join(MEMO_DIR, `storage-driver-${dev}.json`);
  type Memo = { kernel: string; dev: number; driver: StorageDriver; reason?: string };
  const known = memo ? await fs.readFile(memo, 'utf8').then((t) => JSON.parse(t) as Memo, () => undefined) : undefined;
  let choice: DriverChoice | undefined = known && known.kernel === os.release() && known.dev === dev ? known : undefined;
  if (!choice) {
    // The probe mounts a throwaway overlay in the store's own tmp folder (its filesystem is the one that matters).
    await ensureStore(layout);
    choice = await detectStorageDriver(layout.tmp);
    const st = await fs.stat(layout.graph);
    const rec: Memo = { kernel: os.release(), dev: st.dev, driver: choice.driver, ...(choice.reason ? { reason: choice.reason } : {}) };
    await fs.mkdir(MEMO_DIR, { recursive: true, mode: 0o700 })
      .then(() => writeFileAtomic(path.join(MEMO_DIR, `storage-driver-${st.dev}.json`), JSON.stringify(rec), 0o644, { fsync: false }))
      .catch(() => undefined); // no memo: the next build probes again
  }
  if (choice.driver === 'vfs') warn(`WARNING: overlayfs cannot be mounted here (${choice.reason ?? 'unknown'}); using --storage-driver vfs`);
  return choice.driver;
}
