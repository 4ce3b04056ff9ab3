import type { NetworkMode } from '../sandbox/oci-spec.js';
import type { SandboxOptions } from '../sandbox/container.js';
import type { ContainerConfigJson } from '../image-config.js';
import type { Plan } from '../dockerfile/plan.js';
import type { StoreLayout, ImageId } from '../store/layout.js';
import type { CacheMountSync } from '../store/cache-mounts.js';
import type { StepRecord } from '../cache/history.js';
import type { StepResult, StepTask } from '../snapshot/run-step.js';
import type { BuildContext } from '../context/load.js';
import type { RemoteCache } from './remote-cache.js';
import type { ProgressTap } from './progress-tap.js';
import type { BuildEvent } from './progress.js';

/**
 * What runs a step's file work: the worker pool in production (`pool.ts`), a fake in the
 * scheduler's unit tests. `runStep` executes a RUN/COPY/ADD/WORKDIR task; `digest` hashes
 * COPY/ADD sources.
 */
export interface StepExecutor {
  runStep(task: StepTask, onOutput?: (text: string) => void, signal?: AbortSignal): Promise<StepResult>;
  digest<T>(task: unknown): Promise<T>;
}

/** What `build` needs. The Dockerfile defaults to `<context>/Dockerfile`. */
export interface BuildOptions {
  layout: StoreLayout;
  contextDir: string;
  dockerfile?: string;
  tags?: string[];
  buildArgs?: Record<string, string>;
  target?: string;
  noCache?: boolean;
  network?: NetworkMode;
  /** The host network may be asked for (`--network host`, `RUN --network=host`): an operator's entitlement. */
  allowHostNetwork?: boolean;
  /** RUN --security=insecure may be asked for: the operator's security.insecure entitlement. */
  allowInsecure?: boolean;
  /** Build secrets by id (`--secret`); values stay in memory until a step mounts one. */
  secrets?: ReadonlyMap<string, Buffer>;
  /** SSH agent sockets by id (`--ssh`), forwarded into the steps that mount them. */
  ssh?: ReadonlyMap<string, string>;
  /** Cache mounts (RUN --mount=type=cache) are kept per tenant (default "default"). */
  tenant?: string;
  /** Shares cache mounts beyond this store: the farm restores them before a step and publishes them after. */
  cacheMountSync?: CacheMountSync;
  /** How RUN steps are confined: runtime, user namespace, limits, timeout. */
  sandbox?: SandboxOptions;
  /** Rootfs assembly for RUN/COPY/ADD steps (default overlay). */
  storageDriver?: 'overlay' | 'vfs';
  executor: StepExecutor;
  onEvent: (e: BuildEvent) => void;
  /** Live views (`--progress=tty|plain|rawjson`): every stage's events as they happen. */
  progress?: ProgressTap;
  signal?: AbortSignal;
  /** Predict each step's outcome from the cache and history; run nothing, write nothing. */
  plan?: boolean;
  /** False for a throwaway context folder (an uploaded tar), whose stat cache could never hit again. */
  persistStatCache?: boolean;
  /** The farm's shared cache, consulted on a local miss. */
  remote?: RemoteCache;
  /** Called for a FROM image the store lacks (the farm pulls it); true when it is there now. */
  fetchBase?: (ref: string) => Promise<boolean>;
  /** `--pull`: every base is pulled again through fetchBase before the build (see refresh-bases.ts). */
  pull?: boolean;
  /** Clamp layer mtimes to this (seconds since the epoch), so layers are reproducible anywhere. */
  sourceDateEpoch?: number;
}

/** One stage's result. */
export interface StageResult {
  id: ImageId | null;
  config: ContainerConfigJson;
  /** --plan: the stage is predicted to rebuild, so its result is not known yet. */
  unknown?: { step: number };
}

/** Where a step sits: its number, stage, and the identity its history is kept under. */
export interface StepPosition { n: number; stage: number; index: number | string; firstInStage: boolean }

/** Per-stage bookkeeping for explanations and --plan. */
export interface StageTrack { lastMiss?: number; unknownFrom?: number; relinked?: number }

/** Per-build state the step executor needs. */
export interface BuildRun {
  opts: BuildOptions;
  plan: Plan;
  context: BuildContext;
  /** Each stage's result, as a promise: a stage that needs another (FROM, COPY --from) awaits it. */
  stages: Map<number, Promise<StageResult>>;
  escape: string;
  /** The stage a step belongs to. */
  currentStage?: number;
  /** Step records of this build (for stats and the summary line). */
  records: StepRecord[];
  /** What names this build's steps in the history: the first tag, else the Dockerfile path. */
  historyName: string;
  buildId: string;
  /** Images this build stands on; `prune` keeps them while it runs. */
  inUse: Set<string>;
  /**
   * Work left to run beside the next steps: removals of finished steps' scratch folders (a few
   * milliseconds each), and built steps' cache records with their lease's release. The build
   * awaits them all before it settles, and fails if a record could not be written.
   */
  cleanups: Array<Promise<void>>;
}
