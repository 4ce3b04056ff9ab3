import type { Plan } from '../dockerfile/plan.js';
import type { BuildEvent } from './progress.js';

/**
 * `build --pull`: each base image (a FROM that is not a stage or scratch) is pulled again, as
 * Docker's `--pull` does, so a moved tag is followed. A name with no registry in it would be
 * Docker Hub, which this store never contacts: the stored image is used, and a warning says so.
 * Nothing happens without `pull`, or with `plan` (which writes nothing).
 */
export async function refreshBases(plan: Plan, opts: { pull?: boolean; plan?: boolean; fetchBase?: (ref: string) => Promise<boolean>; onEvent: (e: BuildEvent) => void }): Promise<void> {
  if (!opts.pull || opts.plan) return;
  const seen = new Set<string>();
  for (const stage of plan.stages) {
    if (stage.baseStage !== undefined || stage.base === 'scratch' || seen.has(stage.base)) continue;
    seen.add(stage.base);
    const pulled = opts.fetchBase ? await opts.fetchBase(stage.base) : false;
    if (!pulled) opts.onEvent({ type: 'warning', text: `--pull: ${stage.base} names no registry (Docker Hub is never contacted); the stored image is used` });
  }
}
