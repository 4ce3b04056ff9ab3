import type { ViewEvent } from './view-event.js';

/**
 * `--progress=plain`: BuildKit's plain form. Each step is `#N` (its `Step N/M` number):
 * `#N [stage k/n] TEXT`, its output as `#N 0.123 line` (seconds since the step started), then
 * `#N DONE 1.2s`, `#N CACHED`, `#N ERROR: …` or `#N CANCELED`. Stages run in parallel, so their
 * lines interleave; a blank line separates runs of lines of different steps, as BuildKit's do.
 */
export class PlainView {
  private last: number | undefined;
  private readonly starts = new Map<number, number>();
  private readonly partial = new Map<number, string>();
  private readonly cached = new Set<number>();
  private exportStep = 0;
  private exportStarted = 0;

  constructor(private readonly write: (s: string) => void) {}

  private lines(step: number, ls: string[]): void {
    if (this.last !== undefined && this.last !== step) this.write('\n');
    this.last = step;
    this.write(ls.map((l) => `#${step} ${l}\n`).join(''));
  }

  private flushPartial(step: number, at: number): void {
    const rest = this.partial.get(step);
    this.partial.delete(step);
    if (rest) this.lines(step, [`${this.secs(step, at)} ${rest}`]);
  }

  private secs(step: number, at: number): string {
    return ((at - (this.starts.get(step) ?? at)) / 1000).toFixed(3);
  }

  /** Renders one event. */
  event(e: ViewEvent): void {
    const at = Date.parse(e.time);
    switch (e.type) {
      case 'plan': this.exportStep = e.total + 1; return;
      case 'step': this.starts.set(e.step, at); this.lines(e.step, [`${e.label} ${e.text}`]); return;
      case 'cached': this.cached.add(e.step); this.lines(e.step, ['CACHED']); return;
      case 'wait': this.lines(e.step, [`waiting for process ${e.pid}${e.host ? ` on ${e.host}` : ''}, which is building this step`]); return;
      case 'output': {
        const text = (this.partial.get(e.step) ?? '') + e.text;
        const parts = text.split('\n');
        this.partial.set(e.step, parts.pop()!);
        if (parts.length > 0) this.lines(e.step, parts.map((l) => `${this.secs(e.step, at)} ${l}`));
        return;
      }
      case 'done': case 'error': case 'canceled': return this.ended(e, at);
      case 'warning': this.write(`WARNING: ${e.text}\n`); return;
      case 'built':
        this.exportStarted = at;
        this.lines(this.exportStep, ['exporting to image', `writing image ${e.id} done`]);
        return;
      case 'tagged': this.lines(this.exportStep, [`naming to ${e.ref} done`]); return;
      case 'summary': {
        if (this.exportStarted) this.lines(this.exportStep, [`DONE ${((at - this.exportStarted) / 1000).toFixed(1)}s`]);
        const pct = e.steps ? Math.round((100 * e.hits) / e.steps) : 100;
        this.write(`\nCache: ${e.hits}/${e.steps} steps (${pct} %), ${(e.savedMs / 1000).toFixed(1)} s saved\n`);
        return;
      }
      case 'miss': case 'end': return;
    }
  }

  private ended(e: Extract<ViewEvent, { type: 'done' | 'error' | 'canceled' }>, at: number): void {
    this.flushPartial(e.step, at);
    const secs = (e.ms / 1000).toFixed(1);
    if (e.type === 'error') this.lines(e.step, [`ERROR: ${e.message}`]);
    else if (e.type === 'canceled') this.lines(e.step, [`CANCELED`]);
    else if (this.cached.has(e.step)) return;
    else this.lines(e.step, [`DONE ${secs}s`]);
  }
}
