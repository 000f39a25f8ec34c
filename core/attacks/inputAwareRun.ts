/**
 * Input-Aware as a pipeline stage: the attacker's own training run is the standard training.
 * It trains the classifier with the mask and pattern generators, materialises the poisoned
 * training set from the trained generators, and builds the triggered test set; the rest of
 * the pipeline works on those as on any poisoned data. One checkpoint phase covers both of
 * its phases (mask epochs first, then joint ones), so a retried attempt continues from the newest.
 */
import type { AttackerRunInput } from './attack';
import type { BackdoorTestSet } from './testSet';
import { trainInputAwareBackdoor, type InputAwareResult } from './inputAwareTraining';
import type { InputAwareConfig } from './inputAware';
import { attackerRecipe } from './attackerRecipe';
import { runAttackerTraining } from './attackerRun';
import type { StageEnv } from '../pipeline/stageEnv';
import type { PurifyConfig } from '../../schemas/purify';

export type InputAwareStageInput = AttackerRunInput;

export interface InputAwareStageResult extends InputAwareResult {
  backdoorTest?: BackdoorTestSet;
}

export async function inputAwareStandardStage(cfg: PurifyConfig, input: InputAwareStageInput, env: StageEnv): Promise<InputAwareStageResult> {
  const attack = cfg.attack as InputAwareConfig;
  const phase = { name: 'inputaware', epochs: attack.maskEpochs + attackerRecipe(attack, cfg.training).epochs };
  return runAttackerTraining(cfg, attack, input, env, phase, async (options, hooks) => {
    const result = await trainInputAwareBackdoor({
      ...options,
      hooks: hooks && {
        signal: hooks.signal,
        onBatch: hooks.onBatch && ((_phase, epoch, batch, batches) => hooks.onBatch!(epoch, batch, batches)),
        onCheckpoint: hooks.onEpochEnd && ((record, snapshot) => hooks.onEpochEnd!(record, snapshot)),
      },
    });
    env.scope.own(result.generators.mask);
    env.scope.own(result.generators.pattern);
    return result;
  });
}
