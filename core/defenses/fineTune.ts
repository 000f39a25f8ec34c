/**
 * Fine-tuning on the clean budget for a fixed number of optimiser steps, split into
 * checkpointed rounds that are scored on the held-out slice (the best round is kept).
 * Shared by FT, FP's recovery phase and NAD's teacher.
 *
 * A budget smaller than the batch gives one full-set batch per step; a larger one is
 * walked in shuffled passes, so every sample is seen about equally often.
 */
import { deriveSeed } from '../rng';
import type { ImageDataset } from '../data/dataset';
import type { Classifier } from '../models/classifier';
import type { AugmentOptions } from '../train/augment';
import type { EpochLoopResult } from '../train/epochLoop';
import { trainClassifier } from '../train/trainClassifier';
import { heldOutAccuracy } from '../ntml/stages';
import type { FineTuneConfig } from './configs';
import type { PhaseControl } from './defense';

export interface FineTunePlan {
  batchSize: number;
  stepsPerRound: number;
  /** the fitting indices repeated so that one round is `stepsPerRound` batches */
  indices: Int32Array;
}

export function planFineTune(fitSize: number, cfg: Pick<FineTuneConfig, 'steps' | 'rounds' | 'batchSize'>): FineTunePlan {
  if (fitSize < 2) throw new Error(`fine-tuning needs at least 2 clean samples to fit on, got ${fitSize}`);
  const batchSize = Math.min(cfg.batchSize, fitSize);
  const stepsPerRound = Math.max(1, Math.ceil(cfg.steps / cfg.rounds));
  const length = stepsPerRound * batchSize;
  const indices = new Int32Array(length);
  for (let i = 0; i < length; i++) indices[i] = i % fitSize;
  return { batchSize, stepsPerRound, indices };
}

export async function fineTune(
  model: Classifier,
  data: { cleanFit: ImageDataset; cleanHeldOut: ImageDataset; augment: AugmentOptions },
  cfg: FineTuneConfig,
  seed: number,
  control: PhaseControl & { afterStep?: () => void; select?: boolean } = {},
): Promise<EpochLoopResult> {
  const plan = planFineTune(data.cleanFit.labels.length, cfg);
  return trainClassifier({
    classifier: model,
    data: data.cleanFit,
    indices: plan.indices,
    recipe: {
      epochs: cfg.rounds,
      batchSize: plan.batchSize,
      learningRate: cfg.learningRate,
      momentum: cfg.momentum,
      weightDecay: cfg.weightDecay,
      schedule: 'cosine',
      augment: data.augment,
      batchNorm: 'train',
    },
    seed: deriveSeed(seed, 'fineTune'),
    select: control.select === false ? undefined : heldOutAccuracy(model, data.cleanHeldOut),
    resume: control.resume,
    hooks: control.hooks,
    afterStep: control.afterStep,
  });
}
