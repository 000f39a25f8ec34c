/**
 * Each baseline's optimisation budget in steps (protocol, docs/defenses.md). The budget is the
 * original recipe's at 5% of CIFAR-10: BackdoorBench's epochs times its batches per epoch, 2,500
 * images in batches of 256 = 10 (config/defense/<name>/config.yaml: batch_size 256, ratio 0.05).
 * A run keeps that number of steps whatever |D_c| is (more passes over fewer images), so a
 * baseline is never reported as ineffective because at |D_c| = 100 it barely ran.
 * Pure: the numbers here are the ones the defenses plan their batches with.
 */
import type { BaselineDefenseConfig } from './configs';

/** BackdoorBench's batches per epoch at its 5% budget: ceil(2,500 / 256). */
export const RECIPE_BATCHES_PER_EPOCH = Math.ceil(2500 / 256);

export interface StepBudget {
  /** optimiser steps per phase, in the order the phases run */
  phases: Record<string, number>;
  total: number;
  /** where the number comes from, for docs and reports */
  recipe: string;
}

export function stepBudget(cfg: BaselineDefenseConfig): StepBudget {
  const budget = (phases: Record<string, number>, recipe: string): StepBudget => ({
    phases,
    total: Object.values(phases).reduce((a, b) => a + b, 0),
    recipe,
  });
  switch (cfg.name) {
    case 'ft':
      return budget({ fineTune: roundedSteps(cfg.steps, cfg.rounds) }, 'BackdoorBench FT at 5%: 100 epochs x 10 batches = 1,000');
    case 'fp':
      return budget({ fineTune: roundedSteps(cfg.fineTune.steps, cfg.fineTune.rounds) }, 'fine-tuning as FT, BackdoorBench at 5%: 1,000; pruning takes no optimiser steps');
    case 'nad':
      return budget(
        { teacher: cfg.teacherEpochs * cfg.stepsPerEpoch, student: cfg.epochs * cfg.stepsPerEpoch },
        `${cfg.teacherEpochs} + ${cfg.epochs} epochs x ${cfg.stepsPerEpoch} steps; BackdoorBench NAD at 5%: 10 + 10 epochs x 10 batches`,
      );
    case 'anp':
      return budget({ masks: cfg.iterations }, 'the ANP authors and BackdoorBench: 2,000 mask iterations, whatever the clean set');
    case 'ibau':
      return budget(
        { unlearning: cfg.rounds * cfg.stepsPerRound },
        `${cfg.rounds} rounds x ${cfg.stepsPerRound} outer steps, plus ${cfg.innerSteps} perturbation steps a round; BackdoorBench I-BAU at 5%: 5 rounds x 10 batches`,
      );
  }
}

/** FT's steps are split into checkpointed rounds of ceil(steps / rounds) steps each. */
export function roundedSteps(steps: number, rounds: number): number {
  return Math.max(1, Math.ceil(steps / rounds)) * rounds;
}

/** "teacher 100 + student 100 = 200 optimiser steps (…)" for a report's details. */
export function describeStepBudget(b: StepBudget): string {
  const parts = Object.entries(b.phases).map(([phase, steps]) => `${phase} ${steps}`);
  return `${parts.join(' + ')}${parts.length > 1 ? ` = ${b.total}` : ''} optimiser steps, whatever |D_c| (${b.recipe})`;
}
