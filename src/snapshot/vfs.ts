/**
 * The vfs storage driver, for hosts where overlayfs cannot be mounted: a step's rootfs is a
 * plain directory assembled by copying the layer folders (vfs-assemble.ts), the step runs
 * against it (the sandbox bind-mounts it where the overlay would be), and its layer is found by
 * walking and comparing with a snapshot taken just before (vfs-diff.ts). The layer folder it
 * writes has the same overlay form as an upper dir, so packing, caching and later steps (with
 * either driver) cannot tell the difference.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { HOST_FILES, INIT_DIRS } from '../sandbox/init-layer.js';
import { run } from './tar-read.js';
import { shiftOwnersBack, shiftOwnersForward } from '../sandbox/shift-owners.js';
import type { IdMapping } from '../sandbox/userns.js';
import { assembleRootfs, type VfsLayer } from './vfs-assemble.js';
import { diffRootfs, snapshotTree, type TreeSnapshot } from './vfs-diff.js';

/** An assembled rootfs and what it looked like before the step. */
export interface VfsRootfs {
  rootDir: string;
  layers: VfsLayer[];
  before: TreeSnapshot;
  /** The step's id mapping, when its owners were shifted for a user namespace. */
  ids?: IdMapping;
}

/**
 * Assembles `lowerDirs` (top-most first) into `rootDir`, adds the RUN sandbox's mount points
 * when `forRun`, then takes the snapshot: the mount points are part of the baseline, so (like
 * the overlay driver's init layer) they never show up in the diff.
 */
export async function createVfsRootfs(opts: { lowerDirs: string[]; rootDir: string; forRun: boolean; ids?: IdMapping }): Promise<VfsRootfs> {
  const { layers } = await assembleRootfs(opts.lowerDirs, opts.rootDir);
  if (opts.forRun) await prepareMountPoints(opts.rootDir);
  // A RUN in a user namespace sees the copy's owners through its mapping (see shift-owners.ts).
  if (opts.ids) shiftOwnersForward(opts.rootDir, opts.ids);
  return { rootDir: opts.rootDir, layers, before: await snapshotTree(opts.rootDir), ...(opts.ids ? { ids: opts.ids } : {}) };
}

/** Writes what the step changed into the empty `layerDir` (overlay form), then deletes the rootfs. */
export async function writeVfsLayer(v: VfsRootfs, layerDir: string, workDir: string): Promise<void> {
  await diffRootfs({ rootDir: v.rootDir, before: v.before, layerDir, layers: v.layers, workDir });
  if (v.ids) shiftOwnersBack(layerDir, v.ids);
  await fs.rm(v.rootDir, { recursive: true, force: true });
}

/**
 * Makes sure /etc, /proc, /dev, /sys are directories and /etc/hosts, /etc/hostname,
 * /etc/resolv.conf regular files, as the overlay driver's init layer does: missing ones are
 * created (root, 0755 / 0644) and anything else in their place is replaced, which the init
 * layer would hide as well. Parent directories get their mtime back.
 */
export async function prepareMountPoints(rootDir: string): Promise<void> {
  const host = (rel: string): string => (rel === '' ? rootDir : path.join(rootDir, rel));
  const mtimes = new Map<string, bigint>();
  const ensure = async (rel: string, kind: 'dir' | 'file'): Promise<void> => {
    const st = await fs.lstat(host(rel)).catch(() => undefined);
    if (kind === 'dir' ? st?.isDirectory() : st?.isFile()) return;
    const parent = path.posix.dirname(rel) === '.' ? '' : path.posix.dirname(rel);
    if (!mtimes.has(parent)) mtimes.set(parent, (await fs.lstat(host(parent), { bigint: true })).mtimeNs);
    if (st !== undefined) await fs.rm(host(rel), { recursive: true, force: true });
    if (kind === 'dir') {
      await fs.mkdir(host(rel));
      await fs.chmod(host(rel), 0o755);
    } else {
      await fs.writeFile(host(rel), '', { flag: 'wx' });
      await fs.chmod(host(rel), 0o644);
    }
  };
  for (const d of INIT_DIRS) await ensure(d, 'dir');
  for (const f of HOST_FILES) await ensure(`etc/${f}`, 'file');
  for (const [rel, ns] of mtimes) {
    const stamp = `@${ns / 1_000_000_000n}.${String(ns % 1_000_000_000n).padStart(9, '0')}`;
    await run('touch', ['-h', '-c', '-m', '-d', stamp, '--', host(rel)]);
  }
}
