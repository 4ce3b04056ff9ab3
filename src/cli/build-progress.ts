import { SlipwayError } from '../errors.js';
import { renderLegacy, type BuildEvent } from '../scheduler/progress.js';
import type { ProgressTap } from '../scheduler/progress-tap.js';
import type { ViewEvent } from '../progress/view-event.js';

/** The `--progress` values. */
export const PROGRESS_MODES = ['auto', 'legacy', 'tty', 'plain', 'rawjson'] as const;
export type ProgressMode = (typeof PROGRESS_MODES)[number];

/** How a build's progress is shown: the legacy `onEvent` stream, or a live view on the tap. */
export interface BuildProgress {
  /** The build's `onEvent`, and `progress` (the tap) for the live views. */
  sinks: { onEvent: (e: BuildEvent) => void; progress?: ProgressTap };
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
export async function buildProgress(mode: Exclude<ProgressMode, 'auto'>, quiet: boolean): Promise<BuildProgress> {
  if (quiet) return { sinks: { onEvent: () => undefined }, end: () => undefined };
  if (mode === 'legacy') return { sinks: { onEvent: (e) => process.stdout.write(e.type === 'output' ? e.text : renderLegacy(e)) }, end: () => undefined };
  // The live views load only when asked for: the legacy output (the default) needs none of them.
  const [{ ProgressTracker }, sink] = await Promise.all([import('../progress/tracker.js'), viewSink(mode)]);
  const tracker = new ProgressTracker(sink);
  return {
    // Events within stages come through the tap; onEvent adds those outside any stage.
    sinks: { onEvent: (e) => tracker.global(e), progress: tracker },
    end: (error) => tracker.end(error === undefined ? undefined : error instanceof Error ? error.message : String(error)),
  };
}

/** The stderr writer of one live view. */
async function viewSink(mode: 'tty' | 'plain' | 'rawjson'): Promise<(e: ViewEvent) => void> {
  const err = process.stderr;
  if (mode === 'rawjson') return (e) => err.write(`${JSON.stringify(e)}\n`);
  if (mode === 'plain') {
    const v = new (await import('../progress/plain.js')).PlainView((s) => err.write(s));
    return (e) => v.event(e);
  }
  const { TtyView } = await import('../progress/tty-view.js');
  const v = new TtyView({ write: (s) => err.write(s), get columns() { return err.columns; }, get rows() { return err.rows; } });
  return (e) => v.event(e);
}

/** `build`'s progress from its flags: `--progress`, with `-q` and `--plan` checked against it. */
export function progressFor(v: { progress?: string | undefined; quiet?: boolean | undefined; plan?: boolean | undefined }): Promise<BuildProgress> {
  const mode = progressMode(v.progress, process.stderr.isTTY === true);
  if (v.plan && mode !== 'legacy') throw new SlipwayError('ERR_USAGE', '--plan prints its prediction in the legacy form only: leave out --progress or use --progress=legacy');
  const live = v.progress !== undefined && v.progress !== 'auto' && v.progress !== 'legacy';
  if (v.quiet && live) throw new SlipwayError('ERR_USAGE', '--quiet and --progress cannot be used together');
  return buildProgress(mode, v.quiet ?? false);
}
