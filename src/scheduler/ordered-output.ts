import type { BuildEvent } from './progress.js';

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

  constructor(private readonly order: number[], private readonly sink: (e: BuildEvent) => void) {}

  /** The event sink of one stage. */
  channel(stage: number): (e: BuildEvent) => void {
    return (e) => {
      if (this.order[this.cursor] === stage) this.sink(e);
      else {
        const b = this.buffers.get(stage) ?? [];
        b.push(e);
        this.buffers.set(stage, b);
      }
    };
  }

  /** Marks a stage's output complete and lets the next stages' held output through. */
  finish(stage: number): void {
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
