/**
 * How long a sweep still needs, from its progress query: the finished cells' mean cost for every
 * cell still to run, less what each running cell has already spent. Computed here, with the
 * caller's clock, because a query answered by the workflow only knows workflow time.
 */
import type { SweepProgress } from '../workflows/contract';
import { duration } from './format';

/** Cells the mean must come from before there is an estimate (one already gives a usable one). */
export const FINISHED_CELLS_FOR_ETA = 1;

export type SweepEta =
  /** every cell is settled: nothing to estimate */
  | { kind: 'none' }
  | { kind: 'seconds'; seconds: number }
  /** fewer than FINISHED_CELLS_FOR_ETA cells of this run have finished */
  | { kind: 'tooFewFinished'; finished: number };

export function sweepEta(p: SweepProgress, nowMs: number): SweepEta {
  const left = p.total - p.done - p.failed;
  if (left <= 0) return { kind: 'none' };
  if (!p.finishedCells) {
    // a worker of an earlier version: its own estimate (without the running cells' elapsed time)
    return p.etaSeconds === undefined ? { kind: 'tooFewFinished', finished: 0 } : { kind: 'seconds', seconds: p.etaSeconds };
  }
  const { count, meanMs } = p.finishedCells;
  if (count < FINISHED_CELLS_FOR_ETA) return { kind: 'tooFewFinished', finished: count };
  // a running cell past the mean is taken to end any moment, never to give time back
  const runningLeft = (p.runningCells ?? []).map((c) => Math.max(0, meanMs - Math.max(0, nowMs - (c.startedAt ?? nowMs))));
  const notStarted = Math.max(0, left - runningLeft.length);
  const work = notStarted * meanMs + runningLeft.reduce((a, b) => a + b, 0);
  const concurrency = Math.max(1, p.concurrency ?? 1);
  // the window runs `concurrency` cells at once, but no cell finishes faster than its own share:
  // the last cell running alone takes its whole remainder, not a quarter of it
  const longest = Math.max(notStarted > 0 ? meanMs : 0, ...runningLeft);
  return { kind: 'seconds', seconds: Math.round(Math.max(work / concurrency, longest) / 1000) };
}

/** ", ETA 12m 30s" for the progress line, or why there is none yet; '' when nothing is left. */
export function etaText(eta: SweepEta): string {
  switch (eta.kind) {
    case 'none':
      return '';
    case 'seconds':
      return `, ETA ${duration(eta.seconds)}`;
    case 'tooFewFinished':
      return FINISHED_CELLS_FOR_ETA === 1
        ? ', ETA after the first cell finishes'
        : `, ETA after ${FINISHED_CELLS_FOR_ETA} cells finish (${eta.finished} so far)`;
  }
}
