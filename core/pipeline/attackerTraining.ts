/**
 * The standard-training stage of a run whose attacker controls training (Input-Aware, WaNet's
 * default mode): which attacker's run to call, and its result in one shape for the host to
 * store (the backdoored model, the data the later stages see, and any trigger artifact).
 */
import type { Classifier } from '../models/classifier';
import type { EpochRecord } from '../train/epochLoop';
import type { PoisonResult } from '../attacks/base';
import type { BackdoorTestSet } from '../attacks/testSet';
import type { AttackerRunInput } from '../attacks/attack';
import { inputAwareStandardStage } from '../attacks/inputAwareRun';
import { wanetStandardStage } from '../attacks/wanetRun';
import type { PurifyConfig } from '../../schemas/purify';
import type { StageEnv } from './stageEnv';

export interface AttackerTrainingResult {
  /** the backdoored model */
  classifier: Classifier;
  /** the poisoned training set materialised for the defenses, with its record */
  poisoned: PoisonResult;
  backdoorTest?: BackdoorTestSet;
  history: EpochRecord[];
  /** phases before `history` (Input-Aware's mask phase), by name */
  phaseHistories?: Record<string, EpochRecord[]>;
  /** bytes the trigger needs outside this process (Input-Aware's generators); the host stores them */
  triggerArtifact?: { bytes: Uint8Array; field: string };
}

export async function attackerTrainingStage(cfg: PurifyConfig, input: AttackerRunInput, env: StageEnv): Promise<AttackerTrainingResult> {
  const name = cfg.attack?.name;
  switch (name) {
    case 'inputaware': {
      const r = await inputAwareStandardStage(cfg, input, env);
      return {
        classifier: r.classifier,
        poisoned: r.poisoned,
        backdoorTest: r.backdoorTest,
        history: r.history,
        phaseHistories: { inputAwareMask: r.maskHistory },
        triggerArtifact: { bytes: r.encodedGenerators, field: 'generators' },
      };
    }
    case 'wanet': {
      const r = await wanetStandardStage(cfg, input, env);
      return { classifier: r.classifier, poisoned: r.poisoned, backdoorTest: r.backdoorTest, history: r.history };
    }
    default:
      throw new Error(`attack ${String(name)} does not control training; its data is poisoned in prepareData`);
  }
}
