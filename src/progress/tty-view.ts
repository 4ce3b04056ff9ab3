import { TtyFrame } from './tty-frame.js';
import type { ViewEvent } from './view-event.js';

/** A terminal as the live view needs it. */
export interface TtyTarget {
  write(s: string): void;
  columns?: number;
  rows?: number;
}

/** At most this many redraws a second. */
const FPS = 10;

/**
 * `--progress=tty`: the live view, redrawn in place (cursor up, clear to the end of the
 * screen) by a timer, at most 10 times a second, never more lines than the terminal has (so
 * nothing scrolls away from under the cursor). At the end the frame is replaced by a summary
 * that stays: every step with its time.
 */
export class TtyView {
  private readonly state = new TtyFrame();
  private drawn = 0;
  private dirty = false;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly out: TtyTarget) {}

  /** Takes one event; the next tick draws it. The `end` event draws the summary at once. */
  event(e: ViewEvent): void {
    if (this.closed) return;
    if (this.timer === undefined && e.type !== 'end') {
      // Started by the first event: a build refused before it plans draws nothing.
      this.out.write('\x1b[?25l');
      this.timer = setInterval(() => this.tick(), 1000 / FPS);
    }
    this.state.feed(e);
    this.dirty = true;
    if (e.type === 'end') this.close();
  }

  private size(): { w: number; h: number } {
    return { w: this.out.columns || 80, h: this.out.rows || 24 };
  }

  private tick(): void {
    const running = this.state.rows.some((r) => r.state === 'running');
    if (!this.dirty && !running) return;
    this.dirty = false;
    const { w, h } = this.size();
    this.draw(this.state.frame(Date.now(), w, h));
  }

  private draw(lines: string[]): void {
    const up = this.drawn > 0 ? `\x1b[${this.drawn}F` : '';
    this.out.write(`${up}\x1b[J${lines.map((l) => `${l}\n`).join('')}`);
    this.drawn = lines.length;
  }

  /** Stops the timer and leaves the summary on the screen (also when the build failed). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer === undefined) return;
    clearInterval(this.timer);
    const { w } = this.size();
    this.draw(this.state.summary(Date.now(), w));
    this.out.write('\x1b[?25h');
  }
}
