/**
 * FT: fine-tune every weight of the backdoored model on the clean budget (defenses.md).
 * The reference defense plugin.
 */
import { describeStepBudget, stepBudget } from './budgets';
import { ftDefenseSchema, type FtDefenseConfig } from './configs';
import type { DefensePlugin } from './defense';
import { fineTune } from './fineTune';

export const ft: DefensePlugin<FtDefenseConfig> = {
  name: 'ft',
  description: 'fine-tuning of all weights on the clean subset with standard augmentation',
  configSchema: ftDefenseSchema,
  defaultCleanBudget: { fraction: 0.05 },
  async run(model, ctx, cfg) {
    const control = await ctx.phase('fineTune', cfg.rounds);
    const result = await fineTune(model, ctx, cfg, ctx.seed, control);
    return {
      model,
      history: { fineTune: result.history },
      selectionRule: `the round (of ${cfg.rounds}, ${cfg.steps} steps in all) with the best accuracy on the held-out clean slice`,
      details: {
        selectedRound: result.selectedEpoch,
        heldOutAccuracy: result.selectedScore ?? NaN,
        optimisationSteps: stepBudget(cfg).total,
        stepBudget: describeStepBudget(stepBudget(cfg)),
      },
    };
  },
};
