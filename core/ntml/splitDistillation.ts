/**
 * Split distillation (the `split` ML variant): after mutual learning, estimate the backdoor
 * target t^ as the class the backdoored teacher over-predicts relative to the NT student,
 * then distil the student from the frozen standard model only on the training inputs the
 * standard model does not assign to t^: its clean knowledge without its backdoor.
 */
import { tf } from '../tf';
import { subsetDataset, type ImageDataset } from '../data/dataset';
import { predictLabels, predictProbabilities, type Classifier } from '../models/classifier';
import { trainableVariables } from '../train/sgd';
import { trainClassifier } from '../train/trainClassifier';
import type { EpochHooks, EpochLoopResult, EpochRecord } from '../train/epochLoop';
import type { TrainingCheckpoint } from '../train/checkpoint';
import type { AugmentOptions } from '../train/augment';
import { mlLearningRate, type NtmlConfig } from './config';
import { suspectedPoisoned } from './splitEvidence';
import { proxyAsr, targetLeftOut, targetMassBySource, type TrainingGroups } from './splitDiagnostics';
import { disagreementWeights, gateByDisagreement, mlTargetColumn, weightRows } from './splitRemedies';

export interface TargetEstimate {
  estimatedTarget: number;
  /** per class: inputs the teacher assigns minus inputs the student assigns */
  excess: number[];
  /** the classes that share the largest excess (one class when there is no tie) */
  tiedClasses: number[];
}

/**
 * t^: the class with the largest excess. A tie is broken by a draw among the tied classes
 * that favours none of them: every experiment's attack targets one class, so a rule such as
 * "the lowest index wins" would hand t^ to the target for free whenever the estimate is
 * undecided. The draw is seeded by the predictions themselves, so the stage stays a pure
 * function of its inputs (a rerun and a resumed run pick the same class).
 */
export function estimateTargetClass(teacherPred: Int32Array, studentPred: Int32Array, numClasses: number): TargetEstimate {
  const excess = new Array<number>(numClasses).fill(0);
  for (let i = 0; i < teacherPred.length; i++) {
    excess[teacherPred[i]]++;
    excess[studentPred[i]]--;
  }
  const best = Math.max(...excess);
  const tiedClasses = excess.map((e, c) => (e === best ? c : -1)).filter((c) => c >= 0);
  const estimatedTarget = tiedClasses.length === 1 ? tiedClasses[0] : tiedClasses[tieDraw(teacherPred, studentPred) % tiedClasses.length];
  return { estimatedTarget, excess, tiedClasses };
}

/**
 * An unsigned 32-bit draw from the two prediction vectors (FNV-1a over their values, then a
 * murmur3 finaliser so the low bits that pick among a few classes are well mixed).
 */
function tieDraw(a: Int32Array, b: Int32Array): number {
  let h = 0x811c9dc5;
  for (const v of [a, b]) {
    for (let i = 0; i < v.length; i++) h = Math.imul(h ^ (v[i] & 0xff), 0x01000193) >>> 0;
    h = Math.imul(h ^ 0x2f, 0x01000193) >>> 0;
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

/** Indices of the training inputs the standard model does not assign to `target`. */
export function inputsKeptForDistillation(standardPred: Int32Array, target: number): Int32Array {
  const kept: number[] = [];
  for (let i = 0; i < standardPred.length; i++) if (standardPred[i] !== target) kept.push(i);
  return Int32Array.from(kept);
}

/** Predicted labels of each model on the training inputs (no teacher pass when t^ does not need it). */
export async function predictionsForSplit(teacher: Classifier | undefined, student: Classifier, standard: Classifier, train: ImageDataset) {
  const t = teacher ? await predictLabels(teacher, train) : undefined;
  return { teacher: t, student: await predictLabels(student, train), standard: await predictLabels(standard, train) };
}

export interface SplitDistillationOptions {
  student: Classifier;
  standard: Classifier;
  /** training inputs (given labels used only to find the suspected-poisoned inputs) */
  train: ImageDataset;
  /** the plan's kept inputs; empty when the plan fell back to mutual learning alone */
  kept: Int32Array;
  config: NtmlConfig;
  augment: AugmentOptions;
  seed: number;
  /** t^ from the plan; without it, the class f_std assigns to every input left out of `kept` */
  target?: number;
  /** what the training inputs are, when known (evaluation mode): splits the target-mass diagnostic */
  groups?: TrainingGroups;
  /** held-out accuracy of the student (selection); absent in a refit */
  select?: () => Promise<number>;
  /** a refit: the first epochs of the `splitEpochs` schedule, no selection */
  stopAfterEpoch?: number;
  /** per-epoch diagnostics recorded in the history (never used for selection) */
  diagnostics?: (epoch: number) => Promise<Record<string, number>>;
  resume?: TrainingCheckpoint;
  hooks?: EpochHooks;
}

function argmaxRows(p: Float32Array, k: number): Int32Array {
  const out = new Int32Array(p.length / k);
  for (let i = 0; i < out.length; i++) {
    let best = 0;
    for (let j = 1; j < k; j++) if (p[i * k + j] > p[i * k + best]) best = j;
    out[i] = best;
  }
  return out;
}

/**
 * Distils the student (the model after mutual learning) from frozen f_std on the kept inputs.
 * Every epoch records, besides `diagnostics`, where the target's t^ mass comes from
 * (targetMass*) and the student's proxy ASR on the suspected-poisoned inputs (proxyAsr;
 * `suspected` is their count). The remedies of splitRemedies.ts apply when switched on.
 * An empty `kept` is the plan's weak-evidence fallback: the student is returned unchanged.
 */
export async function splitDistillation(o: SplitDistillationOptions): Promise<EpochLoopResult> {
  if (o.kept.length === 0) return { history: [], selectedEpoch: 0, resumedFromEpoch: 0 };
  if (o.kept.length < 2) {
    throw new Error(`split distillation needs at least 2 kept training inputs, got ${o.kept.length}`);
  }
  const cfg = o.config;
  const k = o.standard.meta.numClasses;
  // before training the student is the model after mutual learning (a resume restores its weights inside the loop)
  const pStd = await predictProbabilities(o.standard, o.train);
  const pMl = await predictProbabilities(o.student, o.train);
  const target = o.target ?? targetLeftOut(argmaxRows(pStd, k), o.kept);
  const needsTarget = cfg.splitTargetSource !== 'standard' || cfg.splitGate !== 'none' || cfg.splitStop !== 'none';
  if (target === undefined && needsTarget) {
    throw new Error('split distillation: the remedies (splitTargetSource, splitGate, splitStop) need t^, and the kept inputs do not name one');
  }

  // the distillation target's rows: f_std's, or with t^'s column from the model after ML
  const q = cfg.splitTargetSource === 'mutualLearning' && target !== undefined ? mlTargetColumn(pStd, pMl, target, k) : pStd;
  let kept = o.kept;
  let weights: Float32Array | undefined;
  if (target !== undefined && cfg.splitGate === 'drop') {
    kept = gateByDisagreement(kept, pStd, pMl, target, k, cfg.splitGateThreshold);
    if (kept.length < 2) {
      throw new Error(`split distillation: splitGate drop at splitGateThreshold ${cfg.splitGateThreshold} leaves ${kept.length} of ${o.kept.length} kept inputs`);
    }
  }
  if (target !== undefined && cfg.splitGate === 'weight') weights = disagreementWeights(pStd, pMl, target, k);
  // plain f_std distils on the augmented batch as before; other targets are fixed rows (weighted rows scale the loss)
  const soft = weights ? weightRows(q, weights, k) : q === pStd ? undefined : q;
  const mass = target === undefined ? {} : targetMassBySource((i) => q[i * k + target], kept, o.groups, weights);
  const suspected =
    target === undefined ? new Int32Array(0) : suspectedPoisoned(o.train.labels, argmaxRows(pStd, k), argmaxRows(pMl, k), target);
  const suspectedSet = suspected.length ? subsetDataset(o.train, suspected, `${o.train.name}:suspected-poisoned`) : undefined;
  // the proxy ASR of the current weights, computed once per epoch: selection (when present)
  // runs before the diagnostics in each epoch and starts a new one
  let stamp = 0;
  let proxyStamp = -1;
  let proxy: number | undefined;
  const currentProxy = async () => {
    if (proxyStamp !== stamp) {
      proxy = suspectedSet ? proxyAsr(await predictLabels(o.student, suspectedSet), target!) : undefined;
      proxyStamp = stamp;
    }
    return proxy;
  };
  let select: (() => Promise<number>) | undefined;
  if (cfg.splitStop === 'proxyAsr' && o.stopAfterEpoch === undefined) {
    // keep the last epoch (with splitSelect heldOut: the best held-out one) before the proxy ASR
    // first exceeded the limit; -1 ranks every epoch from then on below all others. The score
    // of a `last` run is the epoch itself (the start is epoch 0).
    const earlier = (o.resume?.extra.history as EpochRecord[] | undefined) ?? [];
    let exceeded = earlier.some((r) => r.score === -1);
    let epoch = o.resume ? o.resume.epoch + 1 : 0;
    const base = o.select;
    select = async () => {
      stamp++;
      const p = await currentProxy();
      if (p !== undefined && p > cfg.splitStopProxyAsr) exceeded = true;
      const score = exceeded ? -1 : base ? await base() : epoch;
      epoch++;
      return score;
    };
  } else if (o.select) {
    const base = o.select;
    select = async () => (stamp++, base());
  }
  const diagnostics = async (epoch: number) => {
    if (!select) stamp++;
    const p = await currentProxy();
    return { ...(o.diagnostics ? await o.diagnostics(epoch) : {}), ...mass, suspected: suspected.length, ...(p === undefined ? {} : { proxyAsr: p }) };
  };

  const anchor = cfg.splitAnchor > 0 ? anchorTowards(o.student, cfg.splitAnchor) : undefined;
  try {
    return await trainClassifier({
      classifier: o.student,
      data: o.train,
      indices: kept,
      targets: soft ? { kind: 'soft', probs: soft } : { kind: 'distill', teacher: o.standard, temperature: 1 },
      recipe: {
        epochs: cfg.splitEpochs,
        batchSize: cfg.splitBatchSize,
        learningRate: mlLearningRate(cfg),
        momentum: 0.9,
        weightDecay: 5e-4,
        schedule: 'cosine',
        augment: o.augment,
        batchNorm: cfg.mlBatchNorm,
      },
      seed: o.seed,
      select,
      selectIncludesStart: true,
      stopAfterEpoch: o.stopAfterEpoch,
      diagnostics,
      resume: o.resume,
      hooks: o.hooks,
      afterStep: anchor?.pull,
    });
  } finally {
    anchor?.dispose();
  }
}

/** splitAnchor: after every step, w <- w - strength * (w - w_start): a pull back to the weights after mutual learning. */
function anchorTowards(c: Classifier, strength: number) {
  const vars = trainableVariables(c.model);
  const start = vars.map((v) => tf.keep(v.clone()));
  return {
    pull: () =>
      tf.tidy(() => {
        vars.forEach((v, j) => v.assign(tf.sub(v, tf.mul(strength, tf.sub(v, start[j])))));
      }),
    dispose: () => tf.dispose(start),
  };
}
