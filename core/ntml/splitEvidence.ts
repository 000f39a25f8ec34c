/**
 * How much the training set supports t^, and the weak-evidence fallback (`splitFallback`).
 * Split distillation re-imports f_std's knowledge on every input f_std does not assign to
 * t^; with t^ wrong (clean data, a weak estimate) that knowledge includes the backdoor. So
 * split distillation runs only when three shares clear `splitMinEvidence`:
 * - t^'s excess: training inputs f_std assigns to t^ minus those the student after mutual
 *   learning assigns to it, over the training set;
 * - the suspected-poisoned inputs (labelled t^, assigned to t^ by f_std and not by the student
 *   after mutual learning) over the training set. Few of them means nothing is poisoned
 *   towards t^ or the student still carries the trigger: distillation has nothing to fix;
 * - f_std's over-prediction of t^ beyond the clean set: the share of training inputs f_std
 *   assigns to t^ minus the share of the clean set (which f_std never saw) it assigns to t^.
 *   The first two compare f_std with the student, so a student that is merely weak on one
 *   class passes them on clean data (measured: a 7.3% excess on clean synthetic data); a
 *   backdoor shows as f_std assigning more of the training set to t^ than of clean data.
 */
import type { NtmlConfig } from './config';

/** Training inputs whose given label is `target`, which f_std assigns to it and the model after mutual learning does not. */
export function suspectedPoisoned(labels: Int32Array, standardPred: Int32Array, mlPred: Int32Array, target: number): Int32Array {
  const out: number[] = [];
  for (let i = 0; i < labels.length; i++) if (labels[i] === target && standardPred[i] === target && mlPred[i] !== target) out.push(i);
  return Int32Array.from(out);
}

export interface SplitEvidence {
  excessCount: number;
  excessShare: number;
  suspectedCount: number;
  suspectedShare: number;
  /** f_std's share of t^ on the training set minus on the clean set (absent without a clean set) */
  overPrediction?: number;
  /** why split distillation is skipped (splitFallback weakEvidence); absent when it runs */
  fallback?: string;
}

export const pctOf = (share: number) => `${(100 * share).toFixed(1)}%`;

export function judgeSplitEvidence(
  target: number,
  excess: number[],
  suspectedCount: number,
  trainSize: number,
  cfg: Pick<NtmlConfig, 'splitFallback' | 'splitMinEvidence'>,
  /** f_std's share of inputs assigned to t^: on the training set and on the clean set */
  shares?: { train: number; clean: number },
): SplitEvidence {
  const excessCount = excess[target];
  const e: SplitEvidence = {
    excessCount,
    excessShare: excessCount / trainSize,
    suspectedCount,
    suspectedShare: suspectedCount / trainSize,
    ...(shares ? { overPrediction: shares.train - shares.clean } : {}),
  };
  if (cfg.splitFallback === 'never') return e;
  const floor = `below splitMinEvidence ${pctOf(cfg.splitMinEvidence)}`;
  // every check that fails is named, so a report says all that was weak
  const weak: string[] = [];
  if (!(e.excessShare >= cfg.splitMinEvidence) || excessCount <= 0) {
    weak.push(`f_std assigns ${excessCount} more training inputs (${pctOf(e.excessShare)}) to it than the student after mutual learning, ${floor}`);
  }
  if (!(e.suspectedShare >= cfg.splitMinEvidence) || suspectedCount === 0) {
    weak.push(
      `${suspectedCount} training inputs (${pctOf(e.suspectedShare)}) are labelled ${target}, assigned to it by f_std and not by the student after mutual learning, ` +
        `${floor} (nothing poisoned towards t^, or the student still carries the trigger)`,
    );
  }
  if (e.overPrediction !== undefined && (!(e.overPrediction >= cfg.splitMinEvidence) || e.overPrediction <= 0)) {
    weak.push(
      `f_std assigns ${pctOf(shares!.train)} of the training inputs and ${pctOf(shares!.clean)} of the clean set to it, ` +
        `an over-prediction of ${pctOf(e.overPrediction)}, ${floor}`,
    );
  }
  if (weak.length) e.fallback = `weak evidence for t^ = ${target}: ${weak.join('; ')}`;
  return e;
}

/** The share of `pred` equal to `target`. */
export function shareOf(pred: Int32Array, target: number): number {
  let n = 0;
  for (const p of pred) if (p === target) n++;
  return pred.length ? n / pred.length : 0;
}
