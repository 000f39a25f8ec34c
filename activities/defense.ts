/**
 * A baseline defense as one activity: loads the stored backdoored (standard) model and the
 * clean budget, runs the defense from the core with per-phase checkpoints, and stores the
 * defended model. Cached like the training stages, keyed by the defense's full config.
 */
import { Context } from '@temporalio/activity';
import { deriveSeed } from '../core/rng';
import { defenseConfigSchema, defenseDisplayName } from '../core/defenses/configs';
import { getDefense, isBaseline } from '../core/defenses/registry';
import type { DefenseContext } from '../core/defenses/defense';
import { checkpointHooks, findResumePoint } from './checkpointing';
import { cachedStage, digestOf } from './stageCache';
import { config as parseConfig, loadDataset, loadModel, nonRetryableOnBadInput, saveModel } from './context';
import type { ArtifactRef, DataRefs, DefenseOutput } from '../workflows/contract';
import { ConfigError } from '../schemas/purify';

export async function runDefense(input: { config: unknown; data: DataRefs; backdoored: ArtifactRef; cache?: boolean }): Promise<DefenseOutput> {
  return nonRetryableOnBadInput(async () => {
    const cfg = parseConfig(input.config);
    const defense = defenseConfigSchema.parse(cfg.defense);
    if (!isBaseline(defense)) throw new ConfigError(`defense.name: runDefense runs the baselines, not ${defense.name}`);
    const d = input.data;
    const dependsOn = {
      backdoored: digestOf(input.backdoored),
      clean: [d.cleanFit, d.cleanHeldOut].map(digestOf),
      defense,
      augment: cfg.training.augment,
      seed: cfg.seed,
    };
    return cachedStage('defense', dependsOn, input.cache !== false, async () => {
      const t0 = Date.now();
      const plugin = getDefense(defense.name);
      const model = await loadModel(input.backdoored);
      const resumedFrom: Record<string, number> = {};
      const skipped: string[] = [];
      const ctx: DefenseContext = {
        cleanFit: await loadDataset(d.cleanFit),
        cleanHeldOut: await loadDataset(d.cleanHeldOut),
        augment: cfg.training.augment,
        seed: deriveSeed(cfg.seed, `defense:${defense.name}`),
        phase: async (name, epochs) => {
          const stage = `defense-${defense.name}-${name}`;
          const { checkpoint, info } = await findResumePoint(stage);
          if (info.resumedFromEpoch) resumedFrom[name] = info.resumedFromEpoch;
          skipped.push(...info.skippedCheckpoints.map((s) => `${name}: ${s}`));
          return { resume: checkpoint, hooks: checkpointHooks(stage, epochs) };
        },
        progress: (detail) => Context.current().heartbeat({ stage: `defense-${defense.name}`, epoch: 0, ...detail }),
        signal: Context.current().cancellationSignal,
      };
      const outcome = await plugin.run(model, ctx, defense);
      const ref = await saveModel(outcome.model);
      outcome.model.model.dispose();
      if (outcome.model !== model) model.model.dispose();
      return {
        model: ref,
        defense: defenseDisplayName(defense),
        history: outcome.history,
        selectionRule: outcome.selectionRule,
        details: outcome.details,
        resumedFrom,
        skippedCheckpoints: skipped,
        seconds: (Date.now() - t0) / 1000,
      };
    });
  });
}
