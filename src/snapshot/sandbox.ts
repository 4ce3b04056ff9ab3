/**
 * The host side of a step's sandbox. RUN steps and `slipway run` are containers under an OCI
 * runtime (`src/sandbox/container.ts`). COPY, ADD and WORKDIR need no container: the shim
 * mounts the overlay (and, for a `COPY --from` of a multi-layer image, that image read-only
 * beside it) in a private mount namespace, and this process writes into it through /proc
 * (`withMountedRootfs`), only through paths resolved inside the rootfs. Guarantees: when these functions settle, nothing is
 * mounted or running any more, and `upperDir` holds only what the step changed; if this Node
 * process dies (even kill -9), the namespaces die with it.
 */
import { spawn } from 'node:child_process';
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SlipwayError, fromPlainError } from '../errors.js';
import { runContainer, type ContainerRun, type ContainerResult } from '../sandbox/container.js';
import { shimPath } from '../sandbox/runtime.js';
import { spawnViaSpawner } from '../sandbox/spawner.js';

/** Every path a mounted rootfs uses inside the caller's scratch dir, spelled once. */
function scratchLayout(scratchDir: string) {
  return {
    links: path.join(scratchDir, 'l'), // short names for the overlay option string
    work: path.join(scratchDir, 'work'),
    merged: path.join(scratchDir, 'merged'),
    empty: path.join(scratchDir, 'empty'),
    fromLinks: path.join(scratchDir, 'fl'), // COPY --from's source image, mounted read-only
    fromMerged: path.join(scratchDir, 'from'),
  };
}

/** Where a step's rootfs comes from and where its changes go. */
export interface RootfsSpec {
  /** Layer dirs in overlay form (0/0 char-device whiteouts, opaque xattr), top-most first; may be empty. */
  lowerDirs: string[];
  /** Empty dir that receives the step's changes: it becomes the new layer. */
  upperDir: string;
  /** Private empty dir on the same filesystem as upperDir; the caller deletes it afterwards. */
  scratchDir: string;
  /**
   * vfs driver: a plain directory holding the whole rootfs, used (bind-mounted) in place of the
   * overlay of lowerDirs + upperDir, which are then ignored; changes land in it and the caller
   * finds them by walking. For RUN it needs the mount points `prepareMountPoints` makes.
   */
  rootDir?: string;
  /** COPY --from of a multi-layer image: its layer dirs (top first), mounted read-only beside the rootfs; `withMountedRootfs` hands `fn` its path. */
  fromLowerDirs?: string[];
}

/** One command to run in the sandbox. */
export type RunSpec = ContainerRun;

/** Runs a RUN step or `slipway run` container; see `runContainer`. */
export function runInSandbox(spec: RunSpec): Promise<ContainerResult> {
  return runContainer(spec);
}


/** The shim's arguments that mount the rootfs (overlay, or the vfs dir) for a script. */
function mountArgs(spec: RootfsSpec, layout: ReturnType<typeof scratchLayout>): string[] {
  return [...rootfsArgs(spec, layout), ...fromArgs(spec, layout)];
}

function fromArgs(spec: RootfsSpec, layout: ReturnType<typeof scratchLayout>): string[] {
  if (!spec.fromLowerDirs || spec.fromLowerDirs.length < 2) return [];
  for (const d of [layout.fromLinks, layout.fromMerged]) fs.mkdirSync(d, { recursive: true });
  return [...spec.fromLowerDirs.flatMap((l) => ['--from-lower', path.resolve(l)]), '--from-links', layout.fromLinks, '--from-merged', layout.fromMerged];
}

function rootfsArgs(spec: RootfsSpec, layout: ReturnType<typeof scratchLayout>): string[] {
  if (spec.rootDir !== undefined) return ['--rootdir', path.resolve(spec.rootDir), '--merged', layout.merged];
  let lowers = spec.lowerDirs.map((d) => path.resolve(d));
  if (lowers.length === 0) {
    fs.mkdirSync(layout.empty, { recursive: true });
    lowers = [layout.empty];
  }
  // The merged root takes its attributes from the upper dir: make it look like the image's.
  const root = spec.lowerDirs[0] === undefined ? undefined : fs.statSync(spec.lowerDirs[0]);
  fs.chmodSync(spec.upperDir, root ? root.mode & 0o7777 : 0o755);
  fs.chownSync(spec.upperDir, root?.uid ?? 0, root?.gid ?? 0);
  return [...lowers.flatMap((l) => ['--lower', l]), '--upper', path.resolve(spec.upperDir), '--work', layout.work, '--links', layout.links, '--merged', layout.merged];
}

/**
 * Mounts the rootfs in a private mount namespace (no chroot: host paths such as the build
 * context stay visible) and runs `fn` in this process (no Node
 * process to start per step): the shim, started through this thread's spawner (so Node never
 * forks itself here), mounts everything, says "mounted" and holds the mount namespace
 * (`--hold-mounts`); `fn` gets the merged dir as seen through /proc/<pid 1 of the shim>/root.
 * `fn` must resolve every path inside that dir (`resolveInRoot`): an absolute symlink followed
 * by the kernel would lead to this process's root. Then pid 1 is killed, and when this settles
 * the shim is gone and nothing is mounted; if this process dies (even kill -9), the spawner
 * dies, the shim's stdin closes and the shim goes too.
 */
export async function withMountedRootfs<R>(spec: RootfsSpec & { signal?: AbortSignal }, fn: (merged: string, from: string | undefined) => Promise<R>): Promise<R> {
  if (spec.signal?.aborted) throw new SlipwayError('ERR_CANCELLED', 'build step cancelled');
  const layout = scratchLayout(path.resolve(spec.scratchDir));
  for (const d of [layout.links, layout.work, layout.merged]) fs.mkdirSync(d, { recursive: true });
  let tail = '';
  const collect = (b: Buffer) => { tail = (tail + b.toString('utf8')).slice(-2000); };
  let status = '';
  let pid1: number | undefined;
  let gone = false;
  // Up once pid 1 has said "mounted" and the shim has said which pid that is; down if the shim exits first.
  let settle: (up: boolean) => void = () => undefined;
  const up = new Promise<boolean>((resolve) => { settle = resolve; });
  const proc = await spawnViaSpawner([shimPath(), ...mountArgs(spec, layout), '--hold-mounts', '--status-fd', '3'], {
    holdStdin: true, onStdout: collect, onStderr: collect,
    onFd3: (b) => {
      status += b.toString('utf8');
      pid1 ??= Number(/^pid (\d+)$/m.exec(status)?.[1]) || undefined;
      if (pid1 !== undefined && /^mounted$/m.test(status)) settle(true);
    },
  });
  void proc.exited.then(() => {
    gone = true;
    settle(false);
  });
  // Killing pid 1 ends the namespace; the shim reaps it, then exits, so `exited` means unmounted.
  // (Once the shim has exited, pid 1 is long reaped: nothing is signalled then.)
  // Before pid 1 is known, the shim itself is killed, and pid 1 follows it (parent-death signal).
  const stop = () => {
    if (gone) return;
    if (pid1 === undefined) return proc.kill('SIGKILL');
    try { process.kill(pid1, 'SIGKILL'); } catch { /* gone */ }
  };
  spec.signal?.addEventListener('abort', stop, { once: true });
  try {
    if (!(await up)) {
      const why = /^error (.*)$/m.exec(status)?.[1] ?? tail.trim();
      throw new SlipwayError('ERR_SANDBOX', `sandbox setup failed: ${why}`);
    }
    const from = spec.fromLowerDirs && spec.fromLowerDirs.length > 1 ? `/proc/${pid1}/root${layout.fromMerged}` : undefined;
    return await fn(`/proc/${pid1}/root${layout.merged}`, from);
  } catch (e) {
    if (spec.signal?.aborted) throw new SlipwayError('ERR_CANCELLED', 'build step cancelled');
    throw e;
  } finally {
    spec.signal?.removeEventListener('abort', stop);
    stop();
    await proc.exited;
    // Overlay leaves work/work (mode 000) behind; the namespace is gone, nothing is mounted.
    fs.rmSync(layout.work, { recursive: true, force: true });
  }
}
