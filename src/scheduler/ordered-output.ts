import type { BuildEvent } from './progress.js';
import type { ProgressTap } from './progress-tap.js';

/**
 * Stages build in parallel, but their output reads as Docker's sequential legacy output: a
 * stage's events flow live while every earlier stage has finished printing, and are held
 * (then flushed whole) otherwise. Step numbers therefore appear in order and each step's lines
 * stay together.
 */
export class OrderedOutput {
  private readonly buffers = new Map<number, BuildEvent[]>();
  private readonly finished = new Set<number>();
  private cursor = 0;

  /** `tap` (the live views) sees every event at once, before any holding back. */
  constructor(private readonly order: number[], private readonly sink: (e: BuildEvent) => void, private readonly tap?: ProgressTap) {}

  /** The event sink of one stage. */
  channel(stage: number): (e: BuildEvent) => void {
    return (e) => {
      this.tap?.event(stage, e);
      if (this.order[this.cursor] === stage) this.sink(e);
      else {
        const b = this.buffers.get(stage) ?? [];
        b.push(e);
        this.buffers.set(stage, b);
      }
    };
  }

  /** Marks a stage's output complete and lets the next stages' held output through. */
  finish(stage: number, error?: unknown): void {
    this.tap?.stageEnd(stage, error === undefined ? undefined : tapError(error));
    this.finished.add(stage);
    while (this.cursor < this.order.length) {
      const cur = this.order[this.cursor]!;
      for (const e of this.buffers.get(cur) ?? []) this.sink(e);
      this.buffers.delete(cur);
      if (!this.finished.has(cur)) return;
      this.cursor++;
    }
  }
}

/** A stage's error as the tap reports it. */
function tapError(e: unknown): { message: string; cancelled: boolean } {
  const code = (e as { code?: unknown } | null)?.code;
  return { message: e instanceof Error ? e.message : String(e), cancelled: code === 'ERR_CANCELLED' };
}
