/**
 * One progress message of a push or pull, shaped as the Engine API's JSON stream entries
 * (`{"status":"Pushing","progressDetail":{"current":512,"total":1234},"id":"bbbbbbbbbbbb"}`), so
 * an endpoint can write each event as it comes and the CLI prints `id: status`.
 */
export interface RegistryProgress {
  status: string;
  /** A layer's short id (12 hex), or a tag for `Pulling from`. Absent for image-wide lines. */
  id?: string;
  progressDetail?: { current?: number; total?: number };
  /** The push result (`{Tag, Digest, Size}`), as Docker's final `aux` message carries it. */
  aux?: { Tag: string; Digest: string; Size: number };
}

/** Receives progress; must not throw. */
export type ProgressSink = (event: RegistryProgress) => void;

/** A sink that drops everything. */
export const noProgress: ProgressSink = () => undefined;
