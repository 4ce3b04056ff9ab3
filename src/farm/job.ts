import type { SlipwayErrorData } from '../errors.js';
import type { SealedSecretsJson } from './secret-box.js';

/** What a queued build carries (small: the context lives in the registry, by digest). */
export interface BuildJobData {
  /** `sha256:…` of the context tar, a blob in `contextRepo` of the farm's registry. */
  contextDigest: string;
  contextSize: number;
  contextRepo: string;
  dockerfile?: string;
  tags: string[];
  buildArgs: Record<string, string>;
  target?: string;
  noCache?: boolean;
  /** Push the result to the registry (tags must name it, or they are pushed under `<registry>/`). */
  push: boolean;
  /** The authenticated tenant: its cache, layers, images and worker stores are its own. */
  tenant: string;
  /** Route keys of the leading steps (route-keys.ts): what cache-affinity routing matches. */
  routeKeys?: string[];
  /** `submit --secret`: sealed for the workers' keys (secret-box.ts), never in the clear. */
  secrets?: SealedSecretsJson;
}

/** One step of a farm build, as the job result reports it. */
export interface FarmStep {
  n: number;
  text: string;
  hit: boolean;
  source: 'local' | 'remote' | 'in-flight';
  reason?: string;
  durationMs: number;
}

/** The job's return value. A user error is a completed job with `ok: false` (never retried). */
export type BuildJobResult =
  | { ok: true; imageId: string; pushed: Array<{ tag: string; digest: string }>; steps: FarmStep[]; worker: string; durationMs: number }
  | { ok: false; error: SlipwayErrorData; steps: FarmStep[]; worker: string; durationMs: number };

/** Progress the worker reports while building: rendered output lines. */
export interface BuildJobProgress {
  seq: number;
  text: string;
}
