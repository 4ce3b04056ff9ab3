import fs from 'node:fs/promises';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import type { MessagePort } from 'node:worker_threads';
import { runInSandbox, withMountedRootfs, type RootfsSpec } from './sandbox.js';
import { mappingFor, type ContainerMount, type ContainerResult, type SandboxOptions } from '../sandbox/container.js';
import { limitMessage } from '../sandbox/limits.js';
import type { NetworkMode } from '../sandbox/oci-spec.js';
import type { IdMapping } from '../sandbox/userns.js';
import { createVfsRootfs, writeVfsLayer, type VfsRootfs } from './vfs.js';
import { finishLayer, type FinishedLayer, type FinishOptions } from './finish-layer.js';
import { flushWhileRunning } from './sync-layer.js';
import type { CopyOp } from './copy-in-root.js';
import { SlipwayError, errorToData, type SlipwayErrorData } from '../errors.js';

/** The worker contract: what the scheduler sends for one uncached RUN/COPY/ADD/WORKDIR step. */
export type StepTask =
  | {
      type: 'run';
      tmpRoot: string;
      lowerDirs: string[];
      argv: string[];
      env: string[];
      uid: number;
      gid: number;
      groups: number[];
      cwd: string;
      network: NetworkMode;
      volumes: string[];
      /** RUN --mount: host sources (made by the scheduler, released after the step) and tmpfs. */
      mounts?: ContainerMount[];
      /** RUN --security=insecure (already checked against the entitlement). */
      insecure?: boolean;
      hostname: string;
      /** Output chunks are posted here as they are produced. */
      port?: MessagePort;
      /** Runtime, user namespace, limits and timeout. */
      sandbox?: SandboxOptions;
      /** How the rootfs is assembled: overlayfs (default) or copies (`vfs`). */
      driver?: StorageDriver;
    } & FinishOptions
  | { type: 'copy'; tmpRoot: string; lowerDirs: string[]; op: CopyOp; driver?: StorageDriver } & FinishOptions;

/** `overlay`: layer folders are overlay lower dirs. `vfs`: the rootfs is assembled by copying and the diff found by walking. */
export type StorageDriver = 'overlay' | 'vfs';

/** A step's outcome, as plain data (errors do not survive the thread boundary). */
export type StepResult =
  | ({ ok: true } & FinishedLayer)
  | { ok: false; error: SlipwayErrorData; exitCode?: number; limits?: ContainerResult['limits'] };

/**
 * Runs one step against a fresh upper folder in `graph/_tmp/`, then measures the diff. The
 * upper folder *is* the new layer (overlay form), so the snapshot costs what changed. With the
 * vfs driver the rootfs is a copy in `rootfs/` instead and the layer is found by walking it.
 */
export async function runStep(task: StepTask, signal?: AbortSignal): Promise<StepResult> {
  const dir = path.join(task.tmpRoot, `${process.pid}-step-${crypto.randomBytes(6).toString('hex')}`);
  const upperDir = path.join(dir, 'layer');
  const scratchDir = path.join(dir, 'scratch');
  try {
    mkdirSync(upperDir, { recursive: true, mode: 0o755 });
    mkdirSync(scratchDir, { recursive: true, mode: 0o700 });
    let vfs: VfsRootfs | undefined;
    let rootfs: RootfsSpec = { lowerDirs: task.lowerDirs, upperDir, scratchDir };
    if (task.driver === 'vfs') {
      const ids = task.type === 'run' ? mappingFor(task.sandbox) : undefined;
      vfs = await createVfsRootfs({ lowerDirs: task.lowerDirs, rootDir: path.join(dir, 'rootfs'), forRun: task.type === 'run', ...(ids ? { ids } : {}) });
      rootfs = { lowerDirs: [], upperDir, scratchDir, rootDir: vfs.rootDir };
    }
    let ownersBack: IdMapping | undefined;
    if (task.type === 'run') {
      // A vfs rootfs's writes are not the layer yet (writeVfsLayer copies them): nothing to flush.
      const flush = vfs ? undefined : flushWhileRunning(upperDir);
      const res = await runInSandbox({ deferOwnerShift: true,
        ...rootfs, argv: task.argv, env: task.env, uid: task.uid, gid: task.gid,
        groups: task.groups, cwd: task.cwd, hostname: task.hostname, network: task.network, netDomain: task.tmpRoot, volumes: task.volumes,
        ...(task.mounts && task.mounts.length > 0 ? { mounts: task.mounts } : {}), ...(task.insecure ? { insecure: true } : {}),
        onOutput: (chunk) => task.port?.postMessage(chunk.toString('utf8')),
        ...(signal ? { signal } : {}),
        ...(task.sandbox ? { sandbox: task.sandbox } : {}),
      }).finally(() => flush?.stop());
      if (res.exitCode !== 0) {
        await fs.rm(dir, { recursive: true, force: true });
        const why = res.limits ? `: ${limitMessage(res.limits, task.sandbox)}` : '';
        return {
          ok: false,
          exitCode: res.exitCode,
          ...(res.limits ? { limits: res.limits } : {}),
          error: { code: 'ERR_STEP_FAILED', message: `returned a non-zero code: ${res.exitCode}${why}`, exitCode: res.exitCode },
        };
      }
      ownersBack = res.ownersBack;
    } else {
      await copyStep(task.op, { ...rootfs, ...(signal ? { signal } : {}) });
    }
    if (vfs) await writeVfsLayer(vfs, upperDir, scratchDir);
    // The scratch folder is left in the step's folder, which its taker removes once the layer has
    // moved out of it (the scheduler's commit, beside the next steps; a cancelled build's pool).
    return { ok: true, ...(await finishLayer(upperDir, task, ownersBack ? { ownersBack } : {})) };
  } catch (e) {
    await fs.rm(dir, { recursive: true, force: true }).catch(() => undefined);
    return { ok: false, error: errorToData(e) };
  } finally {
    if (task.type === 'run') task.port?.close();
  }
}

/**
 * A COPY, ADD or WORKDIR step's writes, in this thread, through the mount namespace the shim
 * holds. A `COPY --from` of a multi-layer image has the shim mount that image's layers too,
 * read-only, beside the rootfs (a single layer is read in place).
 */
async function copyStep(op: CopyOp, rootfs: RootfsSpec & { signal?: AbortSignal }): Promise<void> {
  const { default: copyInRoot } = await import('./copy-in-root.js');
  // Placeholders are filled in the upper dir: a vfs rootfs has none.
  const { link: _unused, ...unlinked } = op;
  const given: CopyOp = rootfs.rootDir === undefined ? op : unlinked;
  const fromLowerDirs = given.from?.lowerDirs;
  const placed = await withMountedRootfs({ ...rootfs, ...(fromLowerDirs ? { fromLowerDirs } : {}) }, async (merged, from) => {
    const res = await copyInRoot(merged, given.from && from !== undefined ? { ...given, from: { ...given.from, mounted: from } } : given);
    // Host paths through the mount become paths in the rootfs, which are the same in the upper dir.
    return res.placed.map(({ dst, ...f }) => {
      if (!dst.startsWith(`${merged}/`)) throw new SlipwayError('ERR_INTERNAL', `copy placed ${dst} outside the rootfs`);
      return { ...f, rel: dst.slice(merged.length) };
    });
  });
  if (given.link && placed.length > 0) {
    const { linkUnchanged } = await import('./link-unchanged.js');
    linkUnchanged({ upperDir: rootfs.upperDir, scratchDir: rootfs.scratchDir, layerDir: given.link.layerDir, files: placed });
  }
}
