/**
 * The recipe of a training-controlled attacker's own run (WaNet's default mode, Input-Aware's
 * joint phase). The attacker trains the model in that threat model, so how long it trains is its
 * choice: `attack.epochs` replaces the recipe's epochs and nothing else. The epoch loop spreads
 * the recipe's schedule (one-cycle warm-up and anneal, cosine) over epochs x batches, so a longer
 * run is the same schedule stretched, not the standard one followed by more steps. Without
 * `attack.epochs` the recipe is returned as it is (the tier's standard training).
 * Pure (no TensorFlow): the pipeline stage reads it to size its checkpoint phase.
 */
import type { TrainRecipe } from '../train/recipe';

export function attackerRecipe(attack: { epochs?: number }, recipe: TrainRecipe): TrainRecipe {
  if (attack.epochs === undefined) return recipe;
  if (!Number.isInteger(attack.epochs) || attack.epochs < 1) throw new Error(`attack.epochs: expected a positive integer, got ${attack.epochs}`);
  return { ...recipe, epochs: attack.epochs };
}
