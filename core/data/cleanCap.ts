/**
 * Protection mode's clean budget: `cleanBudget` caps the user's clean set (examples/protection.yaml).
 * The cap is drawn stratified by class and deterministically from the seed, like evaluation
 * mode's D_c; a clean set no larger than the cap is used whole.
 */
import { deriveSeed } from '../rng';
import { subsetDataset, validateDataset, type ImageDataset } from './dataset';
import { resolveCleanBudget, stratifiedIndices, type CleanBudget } from './splits';

export function capCleanSet(set: ImageDataset, budget: CleanBudget, seed: number): ImageDataset {
  validateDataset(set, 'cleanSet');
  const n = set.labels.length;
  // a count above the set's size is a cap that does not bind; {fraction} is of the clean set
  if (typeof budget === 'number' && Number.isInteger(budget) && budget >= n) return set;
  const count = resolveCleanBudget(budget, n);
  if (count >= n) return set;
  const picked = stratifiedIndices(set.labels, set.numClasses, count, deriveSeed(seed, 'cleanBudget'));
  return subsetDataset(set, picked, `${set.name}:cleanBudget=${count}`);
}
