import fs from 'node:fs/promises';
import path from 'node:path';
import { cleanPath, cloneConfig } from '../image-config.js';
import { expandAt } from '../dockerfile/plan.js';
import { lookupIn, shellOf, workdirOf, type StageState } from '../dockerfile/metadata.js';
import type { WorkdirStep } from '../dockerfile/step.js';
import { mkdirInUpper } from '../snapshot/rootfs.js';
import { makeTmpDir } from '../store/graph.js';
import type { CopyOp } from '../snapshot/copy-in-root.js';
import type { StepResult } from '../snapshot/run-step.js';
import type { BuildRun } from './run-types.js';
import { finishOptions, type LayerWork } from './layer-work.js';

export async function prepareWorkdir(run: BuildRun, state: StageState, step: WorkdirStep, lowerDirs: string[]): Promise<LayerWork> {
  const p = expandAt(run.plan.file, step.line, step.path, lookupIn(state), run.escape);
  const dir = workdirOf(state.config.WorkingDir, p);
  const config = { ...cloneConfig(state.config), WorkingDir: dir };
  const clean = cleanPath(dir);
  const op: CopyOp = { kind: 'MKDIR', sources: [], dest: clean, uid: 0, gid: 0, chownGiven: false, chmod: undefined, keepSpecialBits: false };
  return {
    config,
    cmd: [...shellOf(config), `#(nop) WORKDIR ${dir}`],
    keyExtra: null,
    displayCmd: `WORKDIR ${dir}`,
    execute: async () => (await workdirWithoutSandbox(run, lowerDirs, clean)) ?? run.opts.executor.runStep({ type: 'copy', tmpRoot: run.opts.layout.tmp, lowerDirs, op, driver: run.opts.storageDriver ?? 'overlay', ...finishOptions(run) }),
  };
}

/**
 * WORKDIR only creates folders: done directly in a fresh upper folder (no mount, no sandbox)
 * unless a component is a symlink or file in the image. Undefined means: use the sandbox.
 */
async function workdirWithoutSandbox(run: BuildRun, lowerDirs: string[], dir: string): Promise<StepResult | undefined> {
  if (run.opts.storageDriver === 'vfs') return undefined;
  const tmp = await makeTmpDir(run.opts.layout, 'workdir');
  const upper = path.join(tmp, 'layer');
  await fs.mkdir(upper, { mode: 0o755 });
  try {
    if (!(await mkdirInUpper(lowerDirs, upper, dir))) {
      await fs.rm(tmp, { recursive: true, force: true });
      return undefined;
    }
    // The same finish as a step in the pool: SOURCE_DATE_EPOCH, one pack, the tar kept for the farm.
    // The packer (tar-stream) loads on the first miss: a warm build never packs.
    const { finishLayer } = await import('../snapshot/finish-layer.js');
    return { ok: true, ...(await finishLayer(upper, finishOptions(run), { foldersOnly: true })) };
  } catch (e) {
    await fs.rm(tmp, { recursive: true, force: true });
    throw e;
  }
}

