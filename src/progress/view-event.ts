/**
 * The one event stream behind `--progress=tty|plain|rawjson`: the scheduler's per-stage events
 * (see `ProgressTap`) turned into steps with a start, an outcome and a duration. `rawjson`
 * prints these objects as they are (one per line); the README documents them.
 */
export type ViewEvent = { time: string } & (
  /** Once: the stages to build and the number of steps (`Step N/M`'s M). */
  | { type: 'plan'; stages: Array<{ index: number; name: string | null; steps: number }>; total: number }
  /** A step starts; `step` is its `Step N/M` number, `label` BuildKit's `[stage k/n]`. */
  | { type: 'step'; step: number; stage: number; label: string; text: string }
  | { type: 'cached'; step: number; source: 'local' | 'remote' | 'cache-from' }
  | { type: 'miss'; step: number; reason: string }
  /** Another process on this store builds the same step; this one waits for it. */
  | { type: 'wait'; step: number; pid: number; host: string }
  | { type: 'output'; step: number; text: string }
  | { type: 'done'; step: number; ms: number; image: string | null }
  | { type: 'error'; step: number; ms: number; message: string }
  | { type: 'canceled'; step: number; ms: number }
  | { type: 'warning'; step: number | null; text: string }
  | { type: 'built'; id: string }
  | { type: 'tagged'; ref: string }
  | { type: 'summary'; hits: number; steps: number; savedMs: number }
  /** The last event: how the build ended. */
  | { type: 'end'; ok: boolean; ms: number; error: string | null }
);

/** A ViewEvent before it is stamped. */
export type ViewEventData = Unstamped<ViewEvent>;
type Unstamped<E> = E extends unknown ? Omit<E, 'time'> : never;
