import type { ViewEvent } from './view-event.js';

/** Lines of each running step's output the live view keeps. */
export const TAIL_LINES = 4;
/** Narrower than this, running steps are stacked instead of side by side. */
const MIN_COLUMN = 34;

/** A step as the live view draws it. */
interface Row {
  step: number;
  stage: number;
  label: string;
  text: string;
  started: number;
  ms?: number;
  state: 'running' | 'done' | 'cached' | 'error' | 'canceled';
  miss?: string;
  wait?: number;
  tail: string[];
}

/**
 * Output is hostile: escape sequences from a RUN must not move the cursor or recolour the
 * terminal. Keeps what follows the last carriage return (progress bars), drops other control
 * characters and turns tabs into spaces.
 */
export function cleanLine(s: string): string {
  const afterCr = s.slice(s.lastIndexOf('\r') + 1);
  // eslint-disable-next-line no-control-regex
  return afterCr.replace(/\t/g, '  ').replace(/\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[\]P^_][^\x07\x1b]*(\x07|\x1b\\)?|[\x00-\x1f\x7f-\x9f]/g, '');
}

/** Cuts (or pads) to exactly `w` characters. */
function fit(s: string, w: number): string {
  const chars = [...s];
  if (chars.length > w) return `${chars.slice(0, Math.max(0, w - 1)).join('')}…`;
  return s + ' '.repeat(w - chars.length);
}

/** `left … right` in exactly `w` characters. */
function spread(left: string, right: string, w: number): string {
  const room = w - [...right].length - 1;
  if (room < 4) return fit(left, w);
  return `${fit(left, room)} ${right}`;
}

const secs = (ms: number): string => `${(ms / 1000).toFixed(1)}s`;

/**
 * What `--progress=tty` shows, as plain state: fed ViewEvents, asked for a frame of at most
 * `height` lines of `width` columns. Running steps are drawn side by side (one column each)
 * when the terminal is wide enough, each with its elapsed time, its cache miss reason and the
 * last lines of its output; finished steps above them, one line each.
 */
export class TtyFrame {
  readonly rows: Row[] = [];
  private readonly byStep = new Map<number, Row>();
  private readonly partial = new Map<number, string>();
  total = 0;
  started: number | undefined;
  end: { ok: boolean; error: string | null; ms: number } | undefined;
  readonly trailer: string[] = [];

  /** Takes one event. */
  feed(e: ViewEvent): void {
    const at = Date.parse(e.time);
    this.started ??= at;
    const row = 'step' in e && e.step !== null ? this.byStep.get(e.step) : undefined;
    switch (e.type) {
      case 'plan': this.total = e.total; return;
      case 'step': {
        const r: Row = { step: e.step, stage: e.stage, label: e.label, text: cleanLine(e.text), started: at, state: 'running', tail: [] };
        this.rows.push(r);
        this.byStep.set(e.step, r);
        return;
      }
      case 'cached': if (row) row.state = 'cached'; return;
      case 'miss': if (row) row.miss = cleanLine(e.reason); return;
      case 'wait': if (row) row.wait = e.pid; return;
      case 'output': if (row) this.output(row, e.text); return;
      case 'done': case 'error': case 'canceled':
        if (!row) return;
        row.ms = e.ms;
        if (e.type === 'error') row.state = 'error';
        else if (e.type === 'canceled') row.state = 'canceled';
        else if (row.state !== 'cached') row.state = 'done';
        return;
      case 'warning': this.trailer.push(`WARNING: ${cleanLine(e.text)}`); return;
      case 'built': this.trailer.push(`Successfully built ${e.id.replace(/^sha256:/, '').slice(0, 12)}`); return;
      case 'tagged': this.trailer.push(`Successfully tagged ${cleanLine(e.ref)}`); return;
      case 'summary': {
        const pct = e.steps ? Math.round((100 * e.hits) / e.steps) : 100;
        this.trailer.push(`Cache: ${e.hits}/${e.steps} steps (${pct} %), ${(e.savedMs / 1000).toFixed(1)} s saved`);
        return;
      }
      case 'end': this.end = { ok: e.ok, error: e.error, ms: e.ms }; return;
    }
  }

  private output(row: Row, text: string): void {
    const parts = ((this.partial.get(row.step) ?? '') + text).split('\n');
    const rest = parts.pop()!;
    this.partial.set(row.step, rest);
    row.tail.push(...parts.map(cleanLine).filter((l) => l.trim() !== ''));
    if (row.tail.length > TAIL_LINES) row.tail.splice(0, row.tail.length - TAIL_LINES);
  }

  private header(now: number): string {
    const done = this.rows.filter((r) => r.state !== 'running').length;
    const elapsed = secs((this.end?.ms ?? now - (this.started ?? now)));
    const how = this.end ? (this.end.ok ? ' FINISHED' : ' FAILED') : '';
    return `[+] Building ${elapsed} (${done}/${this.rows.length} steps, ${this.total} in the Dockerfile)${how}`;
  }

  /** One finished (or running, in the stacked form) step in one line. */
  private line(r: Row, now: number, w: number): string {
    const mark = r.state === 'cached' ? 'CACHED ' : r.state === 'error' ? 'ERROR ' : r.state === 'canceled' ? 'CANCELED ' : '';
    const t = r.state === 'cached' ? '0.0s' : secs(r.ms ?? now - r.started);
    return spread(` => ${mark}${r.label} ${r.text}`, t, w);
  }

  /** A running step's block: its line, the cache miss reason, the tail of its output. */
  private block(r: Row, now: number, w: number): string[] {
    const out = [spread(`${r.label} ${r.text}`, secs(now - r.started), w)];
    if (r.wait !== undefined) out.push(fit(` waiting for process ${r.wait}`, w));
    else if (r.miss !== undefined) out.push(fit(` miss: ${r.miss}`, w));
    const partial = cleanLine(this.partial.get(r.step) ?? '');
    const tail = [...r.tail, ...(partial.trim() ? [partial] : [])].slice(-TAIL_LINES);
    for (const l of tail) out.push(fit(` > ${l}`, w));
    return out;
  }

  /** The running steps, side by side when each column can be MIN_COLUMN wide, else stacked. */
  private running(now: number, width: number): string[] {
    const live = this.rows.filter((r) => r.state === 'running').sort((a, b) => a.stage - b.stage || a.step - b.step);
    if (live.length === 0) return [];
    const cols = Math.floor((width + 3) / (MIN_COLUMN + 3)) >= live.length ? live.length : 1;
    if (cols === 1) return live.flatMap((r) => this.block(r, now, width));
    const w = Math.floor((width - 3 * (cols - 1)) / cols);
    const blocks = live.map((r) => this.block(r, now, w));
    const height = Math.max(...blocks.map((b) => b.length));
    const lines: string[] = [];
    for (let i = 0; i < height; i++) lines.push(blocks.map((b) => b[i] ?? ' '.repeat(w)).join(' │ ').trimEnd());
    return lines;
  }

  /** The live frame: header, the latest finished steps, then the running ones. */
  frame(now: number, width: number, height: number): string[] {
    const w = Math.max(20, width - 1);
    const running = this.running(now, w);
    const finished = this.rows.filter((r) => r.state !== 'running');
    const room = Math.max(0, height - 2 - running.length);
    const shown = finished.slice(Math.max(0, finished.length - room)).map((r) => this.line(r, now, w).trimEnd());
    return [fit(this.header(now), w).trimEnd(), ...shown, ...running.map((l) => l.trimEnd())].slice(0, Math.max(1, height - 1));
  }

  /** What stays on the screen at the end: every step with its time, a failed step's output, the result lines. */
  summary(now: number, width: number): string[] {
    const w = Math.max(20, width - 1);
    const out = [this.header(now), ...this.rows.map((r) => {
      const miss = r.state === 'done' && r.miss !== undefined ? ` (miss: ${r.miss})` : '';
      return spread(` => ${r.state === 'cached' ? 'CACHED ' : r.state === 'error' ? 'ERROR ' : r.state === 'canceled' ? 'CANCELED ' : ''}${r.label} ${r.text}${miss}`, r.state === 'cached' ? '0.0s' : secs(r.ms ?? now - r.started), w).trimEnd();
    })];
    for (const r of this.rows.filter((x) => x.state === 'error')) {
      out.push('------', ` > ${r.label} ${r.text}:`, ...r.tail.map((l) => fit(`   ${l}`, w).trimEnd()), '------');
    }
    return [...out, ...this.trailer];
  }
}
