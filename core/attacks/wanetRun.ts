/**
 * WaNet (training-controlled) as a pipeline stage, as inputAwareRun.ts is for Input-Aware: the
 * attacker's own training run is the standard training. It trains the classifier on freshly
 * poisoned batches, materialises the poisoned training set at the same rate and builds the
 * triggered test set from the same grid; the rest of the pipeline works on those as on any
 * poisoned data. One checkpoint phase, `wanet`, of the attacker's epochs (attackerRecipe.ts).
 */
import type { AttackerRunInput } from './attack';
import type { BackdoorTestSet } from './testSet';
import { trainWanetBackdoor, type WanetTrainingResult } from './wanetTraining';
import type { WanetConfig } from './configs';
import { attackerRecipe } from './attackerRecipe';
import { runAttackerTraining } from './attackerRun';
import type { StageEnv } from '../pipeline/stageEnv';
import type { PurifyConfig } from '../../schemas/purify';

export type WanetStageInput = AttackerRunInput;

export interface WanetStageResult extends WanetTrainingResult {
  backdoorTest?: BackdoorTestSet;
}

export async function wanetStandardStage(cfg: PurifyConfig, input: WanetStageInput, env: StageEnv): Promise<WanetStageResult> {
  const attack = cfg.attack as WanetConfig;
  const phase = { name: 'wanet', epochs: attackerRecipe(attack, cfg.training).epochs };
  return runAttackerTraining(cfg, attack, input, env, phase, (options, hooks) => trainWanetBackdoor({ ...options, hooks }));
}
