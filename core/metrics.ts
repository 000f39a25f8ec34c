/**
 * Evaluation metrics (protocol.md), all reported in percent. Pure functions: the caller
 * supplies `predict`, so this module needs no TensorFlow.
 */
import type { ImageDataset } from './data/dataset';

function fractionEqual(pred: ArrayLike<number>, ref: ArrayLike<number>, what: string): number {
  if (pred.length !== ref.length) {
    throw new RangeError(`${what}: ${pred.length} predictions for ${ref.length} labels`);
  }
  if (ref.length === 0) throw new RangeError(`${what}: undefined on an empty set`);
  let hit = 0;
  for (let i = 0; i < ref.length; i++) if (pred[i] === ref[i]) hit++;
  return hit / ref.length;
}

/** Clean accuracy, %. */
export function accuracy(pred: Int32Array, labels: Int32Array): number {
  return 100 * fractionEqual(pred, labels, 'accuracy');
}

/** ASR, %: predictions on triggered non-target images equal to the attack's target label. */
export function attackSuccessRate(predOnTriggered: Int32Array, targetLabels: Int32Array): number {
  return 100 * fractionEqual(predOnTriggered, targetLabels, 'attackSuccessRate');
}

/** RA, %: predictions on the same triggered images equal to their true labels. */
export function robustAccuracy(predOnTriggered: Int32Array, trueLabels: Int32Array): number {
  return 100 * fractionEqual(predOnTriggered, trueLabels, 'robustAccuracy');
}

export interface DerInput {
  accBefore: number;
  asrBefore: number;
  accAfter: number;
  asrAfter: number;
}

/**
 * Defense effectiveness rating (BackdoorBench), inputs and output in %:
 * DER = [max(0, ASR_b - ASR_a) - max(0, ACC_b - ACC_a) + 1] / 2 on fractions, x100.
 * 50 = no effect, 100 = ASR removed at no accuracy cost.
 */
export function defenseEffectivenessRating(m: DerInput): number {
  for (const [k, v] of Object.entries(m)) {
    if (!(Number.isFinite(v) && v >= 0 && v <= 100)) throw new RangeError(`defenseEffectivenessRating: ${k} must be a percentage in [0, 100], got ${v}`);
  }
  const dAsr = Math.max(0, (m.asrBefore - m.asrAfter) / 100);
  const dAcc = Math.max(0, (m.accBefore - m.accAfter) / 100);
  return ((dAsr - dAcc + 1) / 2) * 100;
}

export interface BackdoorEvalSet {
  images: ImageDataset;
  trueLabels: Int32Array;
  targetLabels: Int32Array;
}

export interface EvalResult {
  acc: number;
  asr?: number;
  ra?: number;
}

/** ACC on `test`, and ASR and RA on the backdoor test set if given (all %). */
export async function evaluateModel(
  predict: (ds: ImageDataset) => Promise<Int32Array>,
  test: ImageDataset,
  backdoorTest?: BackdoorEvalSet,
): Promise<EvalResult> {
  const acc = accuracy(await predict(test), test.labels);
  if (!backdoorTest) return { acc };
  const pred = await predict(backdoorTest.images);
  return {
    acc,
    asr: attackSuccessRate(pred, backdoorTest.targetLabels),
    ra: robustAccuracy(pred, backdoorTest.trueLabels),
  };
}
