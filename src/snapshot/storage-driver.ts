/**
 * Which storage driver a build uses when none was asked for: overlay where an overlay mount
 * works on the store's filesystem, vfs otherwise. Probed once per process and folder.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { StorageDriver } from './run-step.js';

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
