/**
 * What a TrainRecipe means to an epoch loop: its optimiser and its step schedule. Standard
 * training and the attackers' own runs (WaNet, Input-Aware) train the classifier on the same
 * recipe, so they read it here, in one place: a recipe field added later (as Nesterov and the
 * one-cycle warm-up were) reaches all of them or none.
 */
import type * as TF from '@tensorflow/tfjs-node';
import { SgdMomentum } from './sgd';
import type { LearningRateSchedule, TrainRecipe } from './recipe';

/** SGD with the recipe's momentum, Nesterov flag and weight decay. */
export function recipeOptimizer(variables: TF.Variable[], recipe: TrainRecipe, fast?: boolean): SgdMomentum {
  return new SgdMomentum(variables, { momentum: recipe.momentum, nesterov: recipe.nesterov, weightDecay: recipe.weightDecay, fast });
}

/** The epoch loop's schedule options: epochs, batch size, peak learning rate, schedule and warm-up. */
export function recipeSchedule(recipe: TrainRecipe): {
  epochs: number;
  batchSize: number;
  peakLearningRate: number;
  schedule: LearningRateSchedule;
  warmupFraction?: number;
} {
  return {
    epochs: recipe.epochs,
    batchSize: recipe.batchSize,
    peakLearningRate: recipe.learningRate,
    schedule: recipe.schedule,
    warmupFraction: recipe.warmupFraction,
  };
}
