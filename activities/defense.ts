/**
 * A baseline defense as one activity: loads the stored backdoored (standard) model and the
 * clean budget, runs the defense stage of the core with per-phase checkpoints, and stores the
 * defended model. Cached like the training stages, keyed by the defense's full config.
 */
import { baselineDefenseStage } from '../core/pipeline/defenseStage';
import { stageActivity } from './stageActivity';
import { defenseStage, type DefenseInput } from './stageDeclarations';
import { loadDataset, saveModel } from './context';
import type { DefenseOutput } from '../workflows/contract';

export async function runDefense(input: DefenseInput): Promise<DefenseOutput> {
  return stageActivity(defenseStage, input, async (cfg, host) => {
    const backdoored = await host.model(input.backdoored);
    const clean = { cleanFit: await loadDataset(input.data.cleanFit), cleanHeldOut: await loadDataset(input.data.cleanHeldOut) };
    const outcome = await baselineDefenseStage(cfg, backdoored, clean, host);
    // the report names each phase's resume point by the defense's own phase name
    const phaseName = (stage: string) => stage.slice(`defense-${outcome.name}-`.length);
    return {
      model: await saveModel(outcome.model),
      defense: outcome.displayName,
      history: outcome.history,
      selectionRule: outcome.selectionRule,
      details: outcome.details,
      resumedFrom: Object.fromEntries(host.phases.filter((p) => p.info.resumedFromEpoch).map((p) => [phaseName(p.stage), p.info.resumedFromEpoch])),
      skippedCheckpoints: host.phases.flatMap((p) => p.info.skippedCheckpoints.map((s) => `${phaseName(p.stage)}: ${s}`)),
      seconds: host.seconds(),
    };
  });
}
