/**
 * What every attacker-controlled training run (Input-Aware, WaNet) does around its own training:
 * it starts from the initial weights standard training of the run would have, trains under one
 * checkpoint phase (a retried attempt continues from its newest checkpoint), and builds the
 * triggered test set from the trigger the training produced. inputAwareRun.ts and wanetRun.ts
 * say only how their attack trains.
 */
import type { AttackerRunInput } from './attack';
import type { BaseAttackConfig, TriggerParameters } from './base';
import { deriveSeed } from '../rng';
import { buildBackdoorTestSet, type BackdoorTestSet } from './testSet';
import { freshModel } from '../pipeline/stageRuns';
import type { Classifier } from '../models/classifier';
import type { ImageDataset } from '../data/dataset';
import type { TrainRecipe } from '../train/recipe';
import type { TrainingCheckpoint } from '../train/checkpoint';
import type { EpochHooks } from '../train/epochLoop';
import type { StageEnv } from '../pipeline/stageEnv';
import type { PurifyConfig } from '../../schemas/purify';

export interface AttackerPhase {
  /** the checkpoint phase's name (part of the stored checkpoints' keys) */
  name: string;
  epochs: number;
}

/** What both attackers' training functions take, but for their hooks (each has its own kind). */
export interface AttackerTrainingOptions<C extends BaseAttackConfig> {
  train: ImageDataset;
  eligibleIndices: Int32Array;
  config: C;
  /** a fresh classifier, trained in place */
  classifier: Classifier;
  /** the tier's recipe (the attack's own epochs, when set, replace its epochs: attackerRecipe.ts) */
  recipe: TrainRecipe;
  seed: number;
  resume?: TrainingCheckpoint;
}

export async function runAttackerTraining<C extends BaseAttackConfig, R extends { triggerParameters: TriggerParameters }>(
  cfg: PurifyConfig,
  attack: C,
  input: AttackerRunInput,
  env: StageEnv,
  phase: AttackerPhase,
  train: (options: AttackerTrainingOptions<C>, hooks: EpochHooks | undefined) => Promise<R>,
): Promise<R & { backdoorTest?: BackdoorTestSet }> {
  // the same initial weights as standard training of this run
  const classifier = await freshModel(cfg, input.train, deriveSeed(cfg.seed, 'init:standard'), env);
  const control = await env.phase(phase.name, phase.epochs);
  const options = { train: input.train, eligibleIndices: input.eligibleIndices, config: attack, classifier, recipe: cfg.training, seed: input.attackSeed, resume: control.resume };
  const result = await train(options, control.hooks);
  const backdoorTest = input.test ? buildBackdoorTestSet(input.test, attack, input.attackSeed, result.triggerParameters) : undefined;
  return { ...result, backdoorTest };
}
