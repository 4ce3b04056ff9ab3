import { SlipwayError } from '../errors.js';
import { renderLegacy, type BuildEvent } from '../scheduler/progress.js';
import type { ProgressTap } from '../scheduler/progress-tap.js';
import { ProgressTracker } from '../progress/tracker.js';
import { PlainView } from '../progress/plain.js';
import { TtyView } from '../progress/tty-view.js';
import type { ViewEvent } from '../progress/view-event.js';

/** The `--progress` values. */
export const PROGRESS_MODES = ['auto', 'legacy', 'tty', 'plain', 'rawjson'] as const;
export type ProgressMode = (typeof PROGRESS_MODES)[number];

/** How a build's progress is shown: the legacy `onEvent` stream, or a live view on the tap. */
export interface BuildProgress {
  onEvent: (e: BuildEvent) => void;
  tap?: ProgressTap;
  /** After the build: the live views' last event (and the tty summary). */
  end: (error?: unknown) => void;
}

/**
 * The mode asked for (`--progress`, else `SLIPWAY_PROGRESS`, else `legacy`), with `auto`
 * resolved: `tty` when stderr is a terminal, `legacy` otherwise.
 */
export function progressMode(flag: string | undefined, isTty: boolean): Exclude<ProgressMode, 'auto'> {
  const asked = flag ?? (process.env['SLIPWAY_PROGRESS'] || 'legacy');
  if (!(PROGRESS_MODES as readonly string[]).includes(asked)) {
    throw new SlipwayError('ERR_USAGE', `invalid --progress ${JSON.stringify(asked)}: auto, legacy, tty, plain or rawjson`);
  }
  if (asked === 'auto') return isTty ? 'tty' : 'legacy';
  return asked as Exclude<ProgressMode, 'auto'>;
}

/**
 * The sinks for one build. `legacy` writes the legacy builder's lines to stdout, as before.
 * `tty`, `plain` and `rawjson` write to stderr (as BuildKit does), each a consumer of the one
 * ViewEvent stream that ProgressTracker makes of the scheduler's tap.
 */
export function buildProgress(mode: Exclude<ProgressMode, 'auto'>, quiet: boolean): BuildProgress {
  if (quiet) return { onEvent: () => undefined, end: () => undefined };
  if (mode === 'legacy') return { onEvent: (e) => process.stdout.write(e.type === 'output' ? e.text : renderLegacy(e)), end: () => undefined };
  const err = process.stderr;
  let sink: (e: ViewEvent) => void;
  if (mode === 'rawjson') sink = (e) => err.write(`${JSON.stringify(e)}\n`);
  else if (mode === 'plain') {
    const v = new PlainView((s) => err.write(s));
    sink = (e) => v.event(e);
  } else {
    const v = new TtyView({ write: (s) => err.write(s), get columns() { return err.columns; }, get rows() { return err.rows; } });
    sink = (e) => v.event(e);
  }
  const tracker = new ProgressTracker(sink);
  return {
    // Events within stages come through the tap; onEvent adds those outside any stage.
    onEvent: (e) => tracker.global(e),
    tap: tracker,
    end: (error) => tracker.end(error === undefined ? undefined : error instanceof Error ? error.message : String(error)),
  };
}
