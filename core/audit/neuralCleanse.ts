/**
 * Neural Cleanse (Wang et al., S&P 2019) as defenses.md `nc` defines its detection part:
 * for every class t, reverse-engineer the smallest trigger (mask m in [0,1]^(HxW), pattern
 * p in [0,1]^(HxWxC)) that sends clean images of other classes to t,
 *   x' = (1 - m) * x + m * p,   minimise CE(f(x'), t) + cost * ||m||_1   (Adam),
 * then compare the mask L1 norms across classes with the MAD anomaly index: a backdoor
 * target needs a far smaller trigger than the other classes.
 *
 * m and p are parameterised through tanh so they stay in [0,1] without clipping. The cost
 * either stays fixed or follows NC's schedule: every `roundSteps` steps the round's attack
 * success is compared with the threshold; `patience` rounds above it multiply the cost by
 * `multiplier`, `patience` rounds below divide it by multiplier^1.5 (NC's asymmetric
 * step). The trigger kept for a class is the smallest-L1 mask of a round that reached the
 * threshold (the last one if none did, marked as such). Every random choice (initial mask
 * and pattern, batch order) comes from the project Rng, so a scan is a function of its seed.
 */
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../tf';
import { Rng, deriveSeed } from '../rng';
import { imageBytes, type ImageDataset } from '../data/dataset';
import type { Classifier, InputRange } from '../models/classifier';
import { applyModel } from '../train/fast';
import { crossEntropy } from '../train/losses';

export type NcCost =
  | { mode: 'fixed'; value: number }
  | { mode: 'schedule'; initial: number; roundSteps: number; patience: number; multiplier: number };

export interface NeuralCleanseOptions {
  /** optimiser steps (mini-batches) per class: the scan's budget */
  stepsPerClass: number;
  batchSize: number;
  /** Adam step size on the tanh parameters (NC: 0.1, betas 0.5 / 0.9) */
  learningRate: number;
  cost: NcCost;
  /** fraction of a batch sent to the class for a round to count as a successful trigger (NC: 0.99) */
  attackSuccessThreshold: number;
  /** anomaly index above which a class on the small side is flagged (defenses.md: 2) */
  anomalyThreshold: number;
  seed: number;
}

export const DEFAULT_NC_OPTIONS: NeuralCleanseOptions = {
  stepsPerClass: 300,
  batchSize: 32,
  learningRate: 0.1,
  cost: { mode: 'schedule', initial: 1e-3, roundSteps: 10, patience: 3, multiplier: 1.5 },
  attackSuccessThreshold: 0.99,
  anomalyThreshold: 2,
  seed: 0,
};

export interface ReversedTrigger {
  targetClass: number;
  /** ||m||_1 of the kept trigger (pixels; a 3x3 patch is 9) */
  maskL1: number;
  /** % of the reference images of other classes that the kept trigger sends to targetClass */
  attackSuccessRate: number;
  /** whether some round reached the attack-success threshold (else the last trigger is kept) */
  reachedThreshold: boolean;
  /** the cost when the scan of this class ended */
  finalCost: number;
  steps: number;
  /** H*W values in [0,1] */
  mask: Float32Array;
  /** H*W*C values in [0,1], HWC */
  pattern: Float32Array;
}

/** A value far from the median in units of the consistency-scaled MAD. */
export interface AnomalyAnalysis {
  median: number;
  /** 1.4826 * median(|x - median|): the normal-consistent MAD */
  mad: number;
  /** |x - median| / mad per class (0 when equal to the median, Infinity when mad is 0 and it differs) */
  indices: number[];
  /** classes with x below the median and index above the threshold */
  flagged: number[];
}

export const MAD_CONSISTENCY = 1.4826;

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) throw new RangeError('median of no values');
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/** NC's outlier test on the mask norms; only small norms are suspicious (a backdoor makes a class easy to reach). */
export function anomalyIndices(l1: number[], threshold: number): AnomalyAnalysis {
  const m = median(l1);
  const mad = MAD_CONSISTENCY * median(l1.map((v) => Math.abs(v - m)));
  const indices = l1.map((v) => {
    const d = Math.abs(v - m);
    if (d === 0) return 0;
    return mad === 0 ? Infinity : d / mad;
  });
  const flagged = l1.flatMap((v, k) => (v < m && indices[k] > threshold ? [k] : []));
  return { median: m, mad, indices, flagged };
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Pixels in [0,1] -> the model's input encoding. */
function encode(x01: TF.Tensor4D, range: InputRange): TF.Tensor4D {
  switch (range) {
    case '0-1':
      return x01;
    case '0-255':
      return tf.mul(x01, 255);
    case '-1-1':
      return tf.sub(tf.mul(x01, 2), 1);
  }
}

function atanh(x: number): number {
  return 0.5 * Math.log((1 + x) / (1 - x));
}

/** Indices of the images whose label is not `target`. */
export function otherClassIndices(ds: ImageDataset, target: number): Int32Array {
  const out: number[] = [];
  for (let i = 0; i < ds.labels.length; i++) if (ds.labels[i] !== target) out.push(i);
  return Int32Array.from(out);
}

/** The images at `indices` as a [n, H, W, C] float tensor in [0,1]. */
function pixels01(ds: ImageDataset, indices: Int32Array): TF.Tensor4D {
  const per = imageBytes(ds);
  const data = new Float32Array(indices.length * per);
  indices.forEach((i, k) => {
    const src = ds.images.subarray(i * per, (i + 1) * per);
    for (let j = 0; j < per; j++) data[k * per + j] = src[j] / 255;
  });
  return tf.tensor4d(data, [indices.length, ds.height, ds.width, ds.channels]);
}

/** x' = (1 - m) x + m p with m [H,W,1] broadcast over channels. */
function stamp(x: TF.Tensor4D, mask: TF.Tensor, pattern: TF.Tensor): TF.Tensor4D {
  return tf.add(tf.mul(x, tf.sub(1, mask)), tf.mul(mask, pattern)) as TF.Tensor4D;
}

/**
 * % of `ds`'s images of classes other than `target` that the model sends to `target` once
 * the trigger (mask H*W, pattern H*W*C, both in [0,1]) is stamped on them.
 */
export async function triggerSuccessRate(
  c: Classifier,
  ds: ImageDataset,
  target: number,
  mask: Float32Array,
  pattern: Float32Array,
  batchSize = 256,
): Promise<number> {
  const pool = otherClassIndices(ds, target);
  if (pool.length === 0) return NaN;
  const { height: H, width: W, channels: C } = ds;
  const m = tf.tensor3d(mask, [H, W, 1]);
  const p = tf.tensor3d(pattern, [H, W, C]);
  let hits = 0;
  try {
    for (let start = 0; start < pool.length; start += batchSize) {
      const chunk = pool.subarray(start, Math.min(pool.length, start + batchSize));
      const n = tf.tidy(() => {
        const x = stamp(pixels01(ds, chunk), m, p);
        const logits = applyModel(c.model, encode(x, c.meta.inputRange), false) as TF.Tensor2D;
        return tf.sum(tf.cast(tf.equal(tf.argMax(logits, -1), target), 'int32'));
      });
      hits += (await n.data())[0];
      n.dispose();
    }
  } finally {
    m.dispose();
    p.dispose();
  }
  return (100 * hits) / pool.length;
}

/** Reverse-engineers the smallest trigger that sends the other classes' images to `target`. */
export async function reverseEngineerTrigger(
  c: Classifier,
  reference: ImageDataset,
  target: number,
  o: NeuralCleanseOptions,
  onStep?: (step: number) => void,
): Promise<ReversedTrigger> {
  const { height: H, width: W, channels: C } = reference;
  const pool = otherClassIndices(reference, target);
  if (pool.length === 0) throw new RangeError(`neural cleanse: the reference set has no image outside class ${target}`);
  const rng = new Rng(deriveSeed(o.seed, 'neural-cleanse', target));
  // NC starts from a uniformly random mask and pattern; 0.99 keeps atanh finite
  const initial = (n: number) => Float32Array.from({ length: n }, () => atanh((rng.next() * 2 - 1) * 0.99));
  // tidy disposes the initial values; the variables keep their own reference to the data
  const [maskRaw, patternRaw] = tf.tidy(() => [
    tf.variable(tf.tensor3d(initial(H * W), [H, W, 1]), true),
    tf.variable(tf.tensor3d(initial(H * W * C), [H, W, C]), true),
  ]);
  const optimizer = tf.train.adam(o.learningRate, 0.5, 0.9);
  const images = pixels01(reference, pool);
  const batch = Math.min(o.batchSize, pool.length);
  const labels = tf.fill([batch], target, 'int32') as TF.Tensor1D;
  const maskOf = () => tf.div(tf.add(tf.tanh(maskRaw), 1), 2);
  const patternOf = () => tf.div(tf.add(tf.tanh(patternRaw), 1), 2);
  const snapshot = async () => {
    const [m, p] = tf.tidy(() => [maskOf(), patternOf()]);
    const out = { mask: (await m.data()) as Float32Array, pattern: (await p.data()) as Float32Array };
    m.dispose();
    p.dispose();
    return out;
  };

  let cost = o.cost.mode === 'fixed' ? o.cost.value : o.cost.initial;
  const roundSteps = o.cost.mode === 'schedule' ? o.cost.roundSteps : 10;
  let order = rng.permutation(pool.length);
  let cursor = 0;
  let roundHits = 0;
  let roundSeen = 0;
  let above = 0;
  let below = 0;
  let best: { l1: number; mask: Float32Array; pattern: Float32Array } | undefined;
  try {
    for (let step = 1; step <= o.stepsPerClass; step++) {
      if (cursor + batch > order.length) {
        order = rng.permutation(pool.length);
        cursor = 0;
      }
      const idx = tf.tensor1d(order.subarray(cursor, cursor + batch), 'int32');
      cursor += batch;
      const costT = tf.scalar(cost);
      let hits: TF.Tensor | undefined;
      const loss = optimizer.minimize(
        () => {
          const m = maskOf();
          const x = stamp(tf.gather(images, idx) as TF.Tensor4D, m, patternOf());
          const logits = applyModel(c.model, encode(x, c.meta.inputRange), false) as TF.Tensor2D;
          hits = tf.keep(tf.sum(tf.cast(tf.equal(tf.argMax(logits, -1), target), 'int32')));
          return tf.add(crossEntropy(logits, labels), tf.mul(costT, tf.sum(m))) as TF.Scalar;
        },
        false,
        [maskRaw, patternRaw],
      );
      loss?.dispose();
      idx.dispose();
      costT.dispose();
      roundHits += (await hits!.data())[0];
      roundSeen += batch;
      hits!.dispose();
      onStep?.(step);

      if (step % roundSteps === 0 || step === o.stepsPerClass) {
        const success = roundHits / roundSeen >= o.attackSuccessThreshold;
        roundHits = 0;
        roundSeen = 0;
        if (success) {
          const snap = await snapshot();
          const l1 = snap.mask.reduce((a, b) => a + b, 0);
          if (!best || l1 < best.l1) best = { l1, ...snap };
        }
        if (o.cost.mode === 'schedule') {
          above = success ? above + 1 : 0;
          below = success ? 0 : below + 1;
          if (above >= o.cost.patience) {
            cost *= o.cost.multiplier;
            above = 0;
          } else if (below >= o.cost.patience) {
            cost /= o.cost.multiplier ** 1.5;
            below = 0;
          }
        }
        await yieldToEventLoop();
      }
    }
    const kept = best ?? { ...(await snapshot()), l1: NaN };
    const maskL1 = kept.mask.reduce((a, b) => a + b, 0);
    return {
      targetClass: target,
      maskL1,
      attackSuccessRate: await triggerSuccessRate(c, reference, target, kept.mask, kept.pattern),
      reachedThreshold: best !== undefined,
      finalCost: cost,
      steps: o.stepsPerClass,
      mask: kept.mask,
      pattern: kept.pattern,
    };
  } finally {
    optimizer.dispose();
    maskRaw.dispose();
    patternRaw.dispose();
    images.dispose();
    labels.dispose();
  }
}

export interface NeuralCleanseResult {
  classes: ReversedTrigger[];
  anomaly: AnomalyAnalysis;
}

/** The scan over every class; `onClass` sees each class as soon as it is finished. */
export async function neuralCleanse(
  c: Classifier,
  reference: ImageDataset,
  o: NeuralCleanseOptions,
  hooks: { onClass?: (t: ReversedTrigger) => Promise<void> | void; onStep?: (target: number, step: number) => void } = {},
): Promise<NeuralCleanseResult> {
  const classes: ReversedTrigger[] = [];
  for (let target = 0; target < c.meta.numClasses; target++) {
    const t = await reverseEngineerTrigger(c, reference, target, o, (step) => hooks.onStep?.(target, step));
    classes.push(t);
    await hooks.onClass?.(t);
  }
  return { classes, anomaly: anomalyIndices(classes.map((t) => t.maskL1), o.anomalyThreshold) };
}
