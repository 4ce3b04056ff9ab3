import type { BuildEvent } from '../scheduler/progress.js';
import type { ProgressTap, StageOutline } from '../scheduler/progress-tap.js';
import type { ViewEvent, ViewEventData } from './view-event.js';

/** A step as the views keep it. */
export interface TrackedStep {
  step: number;
  stage: number;
  label: string;
  text: string;
  started: number;
  ended?: number;
  state: 'running' | 'done' | 'cached' | 'error' | 'canceled';
  missReason?: string;
  waitingFor?: number;
}

/**
 * Turns the scheduler's tap (per-stage events) into ViewEvents: a stage's events are
 * sequential, so its current step is the one its last `step` event started, and that step ends
 * at its `image` event, at the stage's next step, or when the stage ends (failed or cancelled).
 */
export class ProgressTracker implements ProgressTap {
  private readonly stages = new Map<number, StageOutline>();
  private readonly current = new Map<number, TrackedStep>();
  readonly steps: TrackedStep[] = [];
  readonly started = Date.now();
  private multiStage = false;

  constructor(private readonly emit: (e: ViewEvent) => void, private readonly now: () => number = Date.now) {}

  private send(e: ViewEventData): void {
    this.emit({ ...e, time: new Date(this.now()).toISOString() } as ViewEvent);
  }

  plan(stages: StageOutline[], total: number): void {
    for (const s of stages) this.stages.set(s.index, s);
    this.multiStage = stages.length > 1;
    this.send({ type: 'plan', stages: stages.map((s) => ({ index: s.index, name: s.name ?? null, steps: s.count })), total });
  }

  /** BuildKit's label: `[2/3]` for one stage, `[name 2/3]` (or `[stage-1 2/3]`) for several. */
  private label(stage: number, n: number): string {
    const s = this.stages.get(stage);
    if (!s) return `[${n}]`;
    const k = `${n - s.firstNumber + 1}/${s.count}`;
    return this.multiStage ? `[${s.name ?? `stage-${s.index}`} ${k}]` : `[${k}]`;
  }

  event(stage: number, e: BuildEvent): void {
    const cur = this.current.get(stage);
    switch (e.type) {
      case 'step': {
        if (cur) this.finish(cur, 'done', null);
        const t: TrackedStep = { step: e.n, stage, label: this.label(stage, e.n), text: e.text, started: this.now(), state: 'running' };
        this.steps.push(t);
        this.current.set(stage, t);
        this.send({ type: 'step', step: t.step, stage, label: t.label, text: t.text });
        return;
      }
      case 'cache-hit':
        if (cur) {
          cur.state = 'cached';
          this.send({ type: 'cached', step: cur.step, source: e.source ?? 'local' });
        }
        return;
      case 'cache-miss':
        if (cur) cur.missReason = e.reason;
        if (cur) this.send({ type: 'miss', step: cur.step, reason: e.reason });
        return;
      case 'lease-wait':
        if (cur) cur.waitingFor = e.pid;
        if (cur) this.send({ type: 'wait', step: cur.step, pid: e.pid, host: e.host });
        return;
      case 'output':
        if (cur) this.send({ type: 'output', step: cur.step, text: e.text });
        return;
      case 'image':
        if (cur) this.finish(cur, cur.state === 'cached' ? 'cached' : 'done', e.id);
        return;
      case 'warning': case 'not-reproducible':
        this.send({ type: 'warning', step: cur?.step ?? null, text: e.type === 'warning' ? e.text : `step ${e.n} is not reproducible (${e.text})` });
        return;
      default:
        // base, triggers, running, removed: the step's lifetime already tells these.
        return;
    }
  }

  private finish(t: TrackedStep, how: 'done' | 'cached', image: string | null): void {
    this.current.delete(t.stage);
    t.ended = this.now();
    if (t.state !== 'cached') t.state = how;
    this.send({ type: 'done', step: t.step, ms: t.ended - t.started, image: image === null ? null : `sha256:${image}` });
  }

  stageEnd(stage: number, error?: { message: string; cancelled: boolean }): void {
    const cur = this.current.get(stage);
    if (!cur) return;
    this.current.delete(stage);
    cur.ended = this.now();
    const ms = cur.ended - cur.started;
    if (!error) {
      if (cur.state !== 'cached') cur.state = 'done';
      this.send({ type: 'done', step: cur.step, ms, image: null });
    } else if (error.cancelled) {
      cur.state = 'canceled';
      this.send({ type: 'canceled', step: cur.step, ms });
    } else {
      cur.state = 'error';
      this.send({ type: 'error', step: cur.step, ms, message: error.message });
    }
  }

  /** The events outside any stage (`onEvent`'s built, tagged, summary and Dockerfile warnings). */
  global(e: BuildEvent): void {
    if (e.type === 'built') this.send({ type: 'built', id: `sha256:${e.id}` });
    else if (e.type === 'tagged') this.send({ type: 'tagged', ref: e.ref });
    else if (e.type === 'summary') this.send({ type: 'summary', hits: e.hits, steps: e.steps, savedMs: e.savedMs });
    else if (e.type === 'warning') this.send({ type: 'warning', step: null, text: e.text });
  }

  /** The last event; the build's error, if it failed. */
  end(error?: string): void {
    this.send({ type: 'end', ok: error === undefined, ms: this.now() - this.started, error: error ?? null });
  }
}
