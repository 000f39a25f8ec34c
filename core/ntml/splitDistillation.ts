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
}

export function estimateTargetClass(teacherPred: Int32Array, studentPred: Int32Array, numClasses: number): TargetEstimate {
  const excess = new Array<number>(numClasses).fill(0);
  for (let i = 0; i < teacherPred.length; i++) {
    excess[teacherPred[i]]++;
    excess[studentPred[i]]--;
  }
  let estimatedTarget = 0;
  for (let c = 1; c < numClasses; c++) if (excess[c] > excess[estimatedTarget]) estimatedTarget = c;
  return { estimatedTarget, excess };
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
