/**
 * FP: Fine-Pruning (Liu et al. 2018, defenses.md). Channels of the penultimate features
 * that the clean data leaves dormant are where a backdoor can hide; they are pruned in
 * ascending order of their mean clean activation, `pruneStep` of the channels per round,
 * as long as held-out clean accuracy stays within `accRatio` (relative) of the unpruned
 * model's. The pruned model is then fine-tuned with the mask held after every step.
 *
 * BackdoorBench stops pruning on *test* accuracy; here only the held-out slice decides.
 */
import { describeStepBudget, stepBudget } from './budgets';
import { fpDefenseSchema, type FpDefenseConfig } from './configs';
import type { DefensePlugin } from './defense';
import { fineTune } from './fineTune';
import { meanChannelActivation, penultimateChannels } from './features';
import { heldOutAccuracy } from '../ntml/stages';
import { TrainingCancelledError } from '../train/epochLoop';

/** Cumulative pruned-channel counts of rounds 1, 2, ...: at least one channel per round, never all. */
export function pruningSchedule(channels: number, pruneStep: number, maxPruneFraction: number): number[] {
  const perRound = Math.max(1, Math.floor(pruneStep * channels));
  const max = Math.min(channels - 1, Math.floor(maxPruneFraction * channels));
  const counts: number[] = [];
  for (let k = perRound; k <= max; k += perRound) counts.push(k);
  if (max > 0 && counts[counts.length - 1] !== max) counts.push(max);
  return counts;
}

export interface PruningRound {
  round: number;
  pruned: number;
  heldOutAccuracy: number;
  accepted: boolean;
}

export interface PruningSearch {
  /** 0 = no round satisfied the rule: nothing is pruned */
  selectedRound: number;
  pruned: number;
  heldOutAccuracy: number;
  rounds: PruningRound[];
}

/** Relative drop from `baseline`; an unpruned accuracy of 0 cannot drop. */
export function relativeDrop(baseline: number, accuracy: number): number {
  return baseline > 0 ? (baseline - accuracy) / baseline : 0;
}

/**
 * Walks the schedule and stops at the first round whose held-out accuracy drops by
 * `accRatio` or more; the last round before it is selected. Stopping at the first failure
 * (rather than taking the largest passing count) is FP's rule: pruning is monotone and a
 * later lucky round on a small held-out slice would be noise.
 */
export async function searchPruning(
  counts: number[],
  baseline: number,
  accRatio: number,
  evaluate: (pruned: number) => Promise<number>,
  onRound?: (r: PruningRound) => void,
): Promise<PruningSearch> {
  const rounds: PruningRound[] = [];
  let selected: PruningSearch = { selectedRound: 0, pruned: 0, heldOutAccuracy: baseline, rounds };
  for (let i = 0; i < counts.length; i++) {
    const acc = await evaluate(counts[i]);
    const accepted = relativeDrop(baseline, acc) < accRatio;
    const r = { round: i + 1, pruned: counts[i], heldOutAccuracy: acc, accepted };
    rounds.push(r);
    onRound?.(r);
    if (!accepted) break;
    selected = { selectedRound: i + 1, pruned: counts[i], heldOutAccuracy: acc, rounds };
  }
  return selected;
}

/** Channel indices by ascending value; ties keep index order so the result is deterministic. */
export function ascendingOrder(values: ArrayLike<number>): number[] {
  return Array.from({ length: values.length }, (_, i) => i).sort((a, b) => values[a] - values[b] || a - b);
}

export const fp: DefensePlugin<FpDefenseConfig> = {
  name: 'fp',
  description: 'fine-pruning: prune dormant penultimate channels while held-out accuracy holds, then fine-tune with the mask held',
  configSchema: fpDefenseSchema,
  defaultCleanBudget: { fraction: 0.05 },
  async run(model, ctx, cfg) {
    const features = penultimateChannels(model.model);
    const means = await meanChannelActivation(model, features.layer, ctx.cleanFit);
    const order = ascendingOrder(means);
    const score = heldOutAccuracy(model, ctx.cleanHeldOut);
    const before = await score();
    const counts = pruningSchedule(features.channels, cfg.pruneStep, cfg.maxPruneFraction);
    const mask = features.createMask();
    try {
      const search = await searchPruning(
        counts,
        before,
        cfg.accRatio,
        async (pruned) => {
          if (ctx.signal?.aborted) throw new TrainingCancelledError();
          mask.set(order.slice(0, pruned));
          return score();
        },
        (r) => ctx.progress?.({ phase: 'prune', ...r, rounds: counts.length }),
      );
      mask.set(order.slice(0, search.pruned));

      const control = await ctx.phase('fineTune', cfg.fineTune.rounds);
      const tuned = await fineTune(model, ctx, cfg.fineTune, ctx.seed, { ...control, afterStep: () => mask.reapply() });
      const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
      return {
        model,
        history: { fineTune: tuned.history },
        selectionRule:
          `pruning: channels of "${features.layer.name}" in ascending mean activation on the clean fitting set, ` +
          `${counts[0] ?? 0} per round, stopping at the first round whose held-out clean accuracy drops by ${pct(cfg.accRatio)} ` +
          `or more (relative to the unpruned ${before.toFixed(1)}%) or at ${pct(cfg.maxPruneFraction)} of the channels; ` +
          `the last round before that is kept. Fine-tuning (mask held): the round (of ${cfg.fineTune.rounds}) with the best ` +
          `held-out accuracy`,
        details: {
          featureLayer: features.layer.name,
          maskedVia: mask.via,
          channels: features.channels,
          pruned: search.pruned,
          prunedChannels: mask.pruned,
          pruningRound: search.selectedRound,
          pruningRoundsTried: search.rounds.length,
          heldOutAccuracyUnpruned: before,
          heldOutAccuracyPruned: search.heldOutAccuracy,
          fineTuneSelectedRound: tuned.selectedEpoch,
          heldOutAccuracy: tuned.selectedScore ?? NaN,
          optimisationSteps: stepBudget(cfg).total,
          stepBudget: describeStepBudget(stepBudget(cfg)),
        },
      };
    } finally {
      mask.dispose();
    }
  },
};
