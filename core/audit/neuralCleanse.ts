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
 *
 * The classes are optimised together (reverseEngineerTriggers): one step stacks every class's
 * batch, so the scan makes stepsPerClass passes through the model instead of classes x
 * stepsPerClass, with the same per-class results; the backward skips the filter gradients
 * (applyModelForInputGradients).
 */
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../tf';
import { Rng, deriveSeed } from '../rng';
import { imageBytes, type ImageDataset } from '../data/dataset';
import type { Classifier, InputRange } from '../models/classifier';
import { applyModel, applyModelForInputGradients } from '../train/fast';

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
  /**
   * how many classes share each optimiser step (stacked along the batch axis; see
   * reverseEngineerTriggers); default all of them. 1 is the class-after-class scan.
   */
  classesPerPass?: number;
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

/** x' = (1 - m) x + m p with m [H,W,1] (or one per image, [n,H,W,1]) broadcast over channels. */
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

/** One class's optimisation state: its own Rng, batch order, cost schedule and best trigger. */
interface ClassScan {
  target: number;
  rng: Rng;
  /** indices into the reference set of the images of other classes */
  pool: Int32Array;
  batch: number;
  order: Int32Array;
  cursor: number;
  cost: number;
  roundHits: number;
  roundSeen: number;
  above: number;
  below: number;
  best?: { l1: number; mask: Float32Array; pattern: Float32Array };
}

/** The next `batch` reference indices of a class, reshuffled (by its own Rng) when the pool runs out, as NC's epochs do. */
function nextBatch(s: ClassScan): Int32Array {
  if (s.cursor + s.batch > s.order.length) {
    s.order = s.rng.permutation(s.pool.length);
    s.cursor = 0;
  }
  const out = Int32Array.from(s.order.subarray(s.cursor, s.cursor + s.batch), (k) => s.pool[k]);
  s.cursor += s.batch;
  return out;
}

/** NC's cost schedule after a round: patience rounds above the threshold raise the cost, below lower it (1.5 and 1.5^1.5). */
function endRound(s: ClassScan, success: boolean, cost: NcCost): void {
  if (cost.mode !== 'schedule') return;
  s.above = success ? s.above + 1 : 0;
  s.below = success ? 0 : s.below + 1;
  if (s.above >= cost.patience) {
    s.cost *= cost.multiplier;
    s.above = 0;
  } else if (s.below >= cost.patience) {
    s.cost /= cost.multiplier ** 1.5;
    s.below = 0;
  }
}

/** Reverse-engineers the smallest trigger that sends the other classes' images to `target`. */
export async function reverseEngineerTrigger(
  c: Classifier,
  reference: ImageDataset,
  target: number,
  o: NeuralCleanseOptions,
  onStep?: (step: number) => void,
): Promise<ReversedTrigger> {
  return (await reverseEngineerTriggers(c, reference, [target], o, onStep))[0];
}

/**
 * reverseEngineerTrigger for several target classes at once: their K problems are stacked along
 * the batch axis (each class's own batch of other-class images, stamped with that class's mask
 * and pattern), so a step is one forward and one backward through the model for all of them
 * instead of K. Each class's loss term depends only on its own mask and pattern (the model is in
 * inference mode: no batch statistics couple the images), so the sum of the K losses gives every
 * class exactly its own gradient, and Adam, being elementwise, updates it as K separate
 * optimisers would. Each class keeps its own Rng (initial trigger, batch order), cost schedule and
 * best trigger, so the result for a class does not depend on which classes share its steps
 * (up to float rounding).
 */
export async function reverseEngineerTriggers(
  c: Classifier,
  reference: ImageDataset,
  targets: number[],
  o: NeuralCleanseOptions,
  onStep?: (step: number) => void,
): Promise<ReversedTrigger[]> {
  const { height: H, width: W, channels: C } = reference;
  const K = targets.length;
  if (K === 0) return [];
  if (new Set(targets).size !== K) throw new RangeError(`neural cleanse: target classes repeat: ${targets.join(', ')}`);
  const scans: ClassScan[] = targets.map((target) => {
    if (!Number.isInteger(target) || target < 0 || target >= c.meta.numClasses) {
      throw new RangeError(`neural cleanse: target class ${target} is not one of the model's ${c.meta.numClasses} classes`);
    }
    const pool = otherClassIndices(reference, target);
    if (pool.length === 0) throw new RangeError(`neural cleanse: the reference set has no image outside class ${target}`);
    return {
      target,
      rng: new Rng(deriveSeed(o.seed, 'neural-cleanse', target)),
      pool,
      batch: Math.min(o.batchSize, pool.length),
      order: new Int32Array(0),
      cursor: 0,
      cost: o.cost.mode === 'fixed' ? o.cost.value : o.cost.initial,
      roundHits: 0,
      roundSeen: 0,
      above: 0,
      below: 0,
    };
  });
  // NC starts from a uniformly random mask and pattern (0.99 keeps atanh finite), drawn per class
  // in the order a scan of that class alone draws them: mask, pattern, then the batch order
  const maskInit = new Float32Array(K * H * W);
  const patternInit = new Float32Array(K * H * W * C);
  const initial = (rng: Rng, out: Float32Array) => out.forEach((_, j) => (out[j] = atanh((rng.next() * 2 - 1) * 0.99)));
  scans.forEach((s, k) => {
    initial(s.rng, maskInit.subarray(k * H * W, (k + 1) * H * W));
    initial(s.rng, patternInit.subarray(k * H * W * C, (k + 1) * H * W * C));
    s.order = s.rng.permutation(s.pool.length);
  });
  // tidy disposes the initial values; the variables keep their own reference to the data
  const [maskRaw, patternRaw] = tf.tidy(() => [
    tf.variable(tf.tensor4d(maskInit, [K, H, W, 1]), true),
    tf.variable(tf.tensor4d(patternInit, [K, H, W, C]), true),
  ]);
  const optimizer = tf.train.adam(o.learningRate, 0.5, 0.9);
  const images = pixels01(reference, Int32Array.from(reference.labels, (_, i) => i));
  // per stacked image: its class's slot, its target label, and 1/batch so each class's CE is a mean over its own batch
  const slotOf = Int32Array.from(scans.flatMap((s, k) => Array<number>(s.batch).fill(k)));
  const slots = tf.tensor1d(slotOf, 'int32');
  const labels = tf.tensor1d(Int32Array.from(slotOf, (k) => targets[k]), 'int32');
  const weights = tf.tensor1d(Float32Array.from(slotOf, (k) => 1 / scans[k].batch));
  const maskOf = () => tf.div(tf.add(tf.tanh(maskRaw), 1), 2);
  const patternOf = () => tf.div(tf.add(tf.tanh(patternRaw), 1), 2);
  const snapshot = async () => {
    const [m, p] = tf.tidy(() => [maskOf(), patternOf()]);
    const [mask, pattern] = [(await m.data()) as Float32Array, (await p.data()) as Float32Array];
    m.dispose();
    p.dispose();
    return scans.map((_, k) => ({
      mask: mask.slice(k * H * W, (k + 1) * H * W),
      pattern: pattern.slice(k * H * W * C, (k + 1) * H * W * C),
    }));
  };

  const roundSteps = o.cost.mode === 'schedule' ? o.cost.roundSteps : 10;
  try {
    for (let step = 1; step <= o.stepsPerClass; step++) {
      const idx = tf.tensor1d(Int32Array.from(scans.flatMap((s) => [...nextBatch(s)])), 'int32');
      const costT = tf.tensor1d(scans.map((s) => s.cost));
      let hits: TF.Tensor | undefined;
      const loss = optimizer.minimize(
        () => {
          const m = maskOf();
          const x = stamp(tf.gather(images, idx) as TF.Tensor4D, tf.gather(m, slots), tf.gather(patternOf(), slots));
          const logits = applyModelForInputGradients(c.model, encode(x, c.meta.inputRange)) as TF.Tensor2D;
          const hit = tf.cast(tf.equal(tf.argMax(logits, -1), labels), 'int32');
          hits = tf.keep(tf.unsortedSegmentSum(hit, slots, K));
          const ce = tf.neg(tf.sum(tf.mul(tf.oneHot(labels, logits.shape[1]), tf.logSoftmax(logits)), -1));
          const l1 = tf.sum(m, [1, 2, 3]);
          return tf.add(tf.sum(tf.mul(weights, ce)), tf.sum(tf.mul(costT, l1))) as TF.Scalar;
        },
        false,
        [maskRaw, patternRaw],
      );
      loss?.dispose();
      idx.dispose();
      costT.dispose();
      const stepHits = await hits!.data();
      hits!.dispose();
      scans.forEach((s, k) => {
        s.roundHits += stepHits[k];
        s.roundSeen += s.batch;
      });
      onStep?.(step);

      if (step % roundSteps === 0 || step === o.stepsPerClass) {
        const success = scans.map((s) => s.roundHits / s.roundSeen >= o.attackSuccessThreshold);
        const snap = success.some(Boolean) ? await snapshot() : undefined;
        scans.forEach((s, k) => {
          s.roundHits = 0;
          s.roundSeen = 0;
          if (success[k]) {
            const l1 = snap![k].mask.reduce((a, b) => a + b, 0);
            if (!s.best || l1 < s.best.l1) s.best = { l1, ...snap![k] };
          }
          endRound(s, success[k], o.cost);
        });
        await yieldToEventLoop();
      }
    }
    const last = scans.some((s) => !s.best) ? await snapshot() : undefined;
    const out: ReversedTrigger[] = [];
    for (const [k, s] of scans.entries()) {
      const kept = s.best ?? last![k];
      out.push({
        targetClass: s.target,
        maskL1: kept.mask.reduce((a, b) => a + b, 0),
        attackSuccessRate: await triggerSuccessRate(c, reference, s.target, kept.mask, kept.pattern),
        reachedThreshold: s.best !== undefined,
        finalCost: s.cost,
        steps: o.stepsPerClass,
        mask: kept.mask,
        pattern: kept.pattern,
      });
    }
    return out;
  } finally {
    optimizer.dispose();
    maskRaw.dispose();
    patternRaw.dispose();
    images.dispose();
    slots.dispose();
    labels.dispose();
    weights.dispose();
  }
}

export interface NeuralCleanseResult {
  classes: ReversedTrigger[];
  anomaly: AnomalyAnalysis;
}

/** `classes` in groups of `size` (default: one group; the last group may be smaller). */
export function classGroups(classes: number[], size?: number): number[][] {
  const per = size ?? classes.length;
  if (!Number.isInteger(per) || per < 1) throw new RangeError(`neural cleanse: classesPerPass must be an integer >= 1, got ${per}`);
  const out: number[][] = [];
  for (let i = 0; i < classes.length; i += per) out.push(classes.slice(i, i + per));
  return out;
}

/** The scan over every class; `onClass` sees each class as soon as its group is finished. */
export async function neuralCleanse(
  c: Classifier,
  reference: ImageDataset,
  o: NeuralCleanseOptions,
  hooks: { onClass?: (t: ReversedTrigger) => Promise<void> | void; onStep?: (targets: number[], step: number) => void } = {},
): Promise<NeuralCleanseResult> {
  const classes: ReversedTrigger[] = [];
  const all = Array.from({ length: c.meta.numClasses }, (_, k) => k);
  for (const group of classGroups(all, o.classesPerPass)) {
    for (const t of await reverseEngineerTriggers(c, reference, group, o, (step) => hooks.onStep?.(group, step))) {
      classes.push(t);
      await hooks.onClass?.(t);
    }
  }
  return { classes, anomaly: anomalyIndices(classes.map((t) => t.maskL1), o.anomalyThreshold) };
}
