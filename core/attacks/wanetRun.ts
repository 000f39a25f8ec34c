/**
 * WaNet (training-controlled) as a pipeline stage, as inputAwareRun.ts is for Input-Aware: the
 * attacker's own training run is the standard training. It trains the classifier on freshly
 * poisoned batches, materialises the poisoned training set at the same rate and builds the
 * triggered test set from the same grid; the rest of the pipeline works on those as on any
 * poisoned data. One checkpoint phase, `wanet`, of the attacker's epochs (attackerRecipe.ts).
 */
import type { AttackerRunInput } from './attack';
import { deriveSeed } from '../rng';
import { buildBackdoorTestSet, type BackdoorTestSet } from './testSet';
import { trainWanetBackdoor, type WanetTrainingResult } from './wanetTraining';
import type { WanetConfig } from './configs';
import { freshModel } from '../pipeline/stageRuns';
import { attackerRecipe } from './attackerRecipe';
import type { StageEnv } from '../pipeline/stageEnv';
import type { PurifyConfig } from '../../schemas/purify';

export type WanetStageInput = AttackerRunInput;

export interface WanetStageResult extends WanetTrainingResult {
  backdoorTest?: BackdoorTestSet;
}

export async function wanetStandardStage(cfg: PurifyConfig, input: WanetStageInput, env: StageEnv): Promise<WanetStageResult> {
  // the same initial weights as standard training of this run
  const classifier = await freshModel(cfg, input.train, deriveSeed(cfg.seed, 'init:standard'), env);
  const attack = cfg.attack as WanetConfig;
  const control = await env.phase('wanet', attackerRecipe(attack, cfg.training).epochs);
  const result = await trainWanetBackdoor({
    train: input.train,
    eligibleIndices: input.eligibleIndices,
    config: attack,
    classifier,
    recipe: cfg.training,
    seed: input.attackSeed,
    resume: control.resume,
    hooks: control.hooks,
  });
  const backdoorTest = input.test ? buildBackdoorTestSet(input.test, attack, input.attackSeed, result.triggerParameters) : undefined;
  return { ...result, backdoorTest };
}
