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
import type { StageControl } from '../ntml/stages';
import type { StageEnv } from '../pipeline/stageEnv';
import type { PurifyConfig } from '../../schemas/purify';

export interface AttackerPhase {
  /** the checkpoint phase's name (part of the stored checkpoints' keys) */
  name: string;
  epochs: number;
}

export async function runAttackerTraining<R extends { triggerParameters: TriggerParameters }>(
  cfg: PurifyConfig,
  attack: BaseAttackConfig,
  input: AttackerRunInput,
  env: StageEnv,
  phase: AttackerPhase,
  train: (classifier: Classifier, control: StageControl) => Promise<R>,
): Promise<R & { backdoorTest?: BackdoorTestSet }> {
  // the same initial weights as standard training of this run
  const classifier = await freshModel(cfg, input.train, deriveSeed(cfg.seed, 'init:standard'), env);
  const control = await env.phase(phase.name, phase.epochs);
  const result = await train(classifier, control);
  const backdoorTest = input.test ? buildBackdoorTestSet(input.test, attack, input.attackSeed, result.triggerParameters) : undefined;
  return { ...result, backdoorTest };
}
