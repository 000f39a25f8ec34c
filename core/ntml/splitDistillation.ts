/**
 * Split distillation (the `split` ML variant): after mutual learning, estimate the backdoor
 * target t^ as the class the backdoored teacher over-predicts relative to the NT student,
 * then distil the student from the frozen standard model only on the training inputs the
 * standard model does not assign to t^: its clean knowledge without its backdoor.
 */
import type { ImageDataset } from '../data/dataset';
import { predictLabels, type Classifier } from '../models/classifier';
import { trainClassifier } from '../train/trainClassifier';
import type { EpochHooks, EpochLoopResult } from '../train/epochLoop';
import type { TrainingCheckpoint } from '../train/checkpoint';
import type { AugmentOptions } from '../train/augment';
import { mlLearningRate, type NtmlConfig } from './config';

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
  /** training inputs (labels unused) */
  train: ImageDataset;
  kept: Int32Array;
  config: NtmlConfig;
  augment: AugmentOptions;
  seed: number;
  /** held-out accuracy of the student (selection); absent in a refit */
  select?: () => Promise<number>;
  /** a refit: the first epochs of the `splitEpochs` schedule, no selection */
  stopAfterEpoch?: number;
  /** per-epoch diagnostics recorded in the history (never used for selection) */
  diagnostics?: (epoch: number) => Promise<Record<string, number>>;
  resume?: TrainingCheckpoint;
  hooks?: EpochHooks;
}

export async function splitDistillation(o: SplitDistillationOptions): Promise<EpochLoopResult> {
  if (o.kept.length < 2) {
    throw new Error(`split distillation needs at least 2 kept training inputs, got ${o.kept.length}`);
  }
  return trainClassifier({
    classifier: o.student,
    data: o.train,
    indices: o.kept,
    targets: { kind: 'distill', teacher: o.standard, temperature: 1 },
    recipe: {
      epochs: o.config.splitEpochs,
      batchSize: o.config.splitBatchSize,
      learningRate: mlLearningRate(o.config),
      momentum: 0.9,
      weightDecay: 5e-4,
      schedule: 'cosine',
      augment: o.augment,
      batchNorm: o.config.mlBatchNorm,
    },
    seed: o.seed,
    select: o.select,
    selectIncludesStart: true,
    stopAfterEpoch: o.stopAfterEpoch,
    diagnostics: o.diagnostics,
    resume: o.resume,
    hooks: o.hooks,
  });
}
