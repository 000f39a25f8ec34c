/**
 * WaNet's training-controlled run (TensorFlow side of wanet.ts): the attacker trains the
 * classifier, and that classifier is the backdoored model, as in the paper and BackdoorBench.
 *
 * The recipe sets epochs (unless the attacker sets its own, `config.epochs`: attackerRecipe.ts),
 * batch size, SGD (momentum, weight decay, schedule) and BN mode; every
 * batch is poisoned afresh and augmented by WaNet's own transform (wanetBatch.ts), which
 * replaces the recipe's augmentation. The warping grid is fixed by the attack seed (or
 * `gridSeed`), the same grid the test-time trigger uses.
 * After training, the poisoned training set is materialised at the same rate for the defenses
 * and NT-ML, which see it as the attacker's training set: wanet.poisonTrainingSet draws
 * round(rate * n) eligible images (warped, relabelled) and round(crossRatio * that) noise-mode
 * images (labels kept), exactly the poison-only draw for this seed.
 *
 * Every draw is seeded from `seed`; checkpoints (runEpochs: weights, SGD buffers, shuffling
 * RNG) also carry the batch RNG, so a resumed run ends with the weights of an uninterrupted one.
 */
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../tf';
import { Rng, deriveSeed, type RngState } from '../rng';
import type { ImageDataset } from '../data/dataset';
import type { Classifier } from '../models/classifier';
import { trainableVariables } from '../train/sgd';
import { recipeOptimizer, recipeSchedule } from '../train/recipeRun';
import { attackerRecipe } from './attackerRecipe';
import { crossEntropy } from '../train/losses';
import { applyModel, useFastPath } from '../train/fast';
import { runEpochs, type EpochHooks, type EpochRecord } from '../train/epochLoop';
import { noAugmentation } from '../train/augment';
import type { TrainingCheckpoint } from '../train/checkpoint';
import type { TrainRecipe } from '../train/recipe';
import { attackTargetLabel, checkEligible, imageBytes, validateBaseConfig, type PoisonResult, type TriggerParameters } from './base';
import { checkWanetFits, wanet, wanetControlPoints, wanetControlSeed, wanetGrid } from './wanet';
import { assembleWanetBatch, type WanetAugment } from './wanetBatch';
import type { WanetConfig } from './configs';

export interface TrainWanetOptions {
  train: ImageDataset;
  /** training indices outside the clean budget: only these are ever warped */
  eligibleIndices: Int32Array;
  config: WanetConfig;
  /** a fresh classifier; it is trained in place and returned */
  classifier: Classifier;
  /** the tier's recipe; `config.epochs`, when set, replaces its epochs (attackerRecipe.ts) */
  recipe: TrainRecipe;
  seed: number;
  hooks?: EpochHooks;
  /** a checkpoint this same run handed to hooks.onEpochEnd: continue from it */
  resume?: TrainingCheckpoint;
}

/** How many samples of each kind the run trained on, over all epochs (the per-batch draws). */
export interface WanetBatchTotals {
  backdoor: number;
  cross: number;
  clean: number;
}

export interface WanetTrainingResult {
  /** the backdoored model (the input classifier, trained) */
  classifier: Classifier;
  /** the training set materialised at the same rate, for the defenses and NT-ML */
  poisoned: PoisonResult;
  triggerParameters: TriggerParameters;
  history: EpochRecord[];
  totals: WanetBatchTotals;
}

interface Carried {
  batchRng: RngState;
  totals: WanetBatchTotals;
}

/** WaNet's augmentation for this run: the config's, with the recipe's flip unless the config sets one. */
export function wanetAugment(config: WanetConfig, recipe: TrainRecipe): WanetAugment {
  return { padding: config.augment.padding, rotation: config.augment.rotation, flip: config.augment.flip ?? recipe.augment.flip };
}

export async function trainWanetBackdoor(o: TrainWanetOptions): Promise<WanetTrainingResult> {
  const { train, config, classifier: c, seed } = o;
  const recipe = attackerRecipe(config, o.recipe);
  if (config.mode !== 'trainingControlled') throw new Error(`trainWanetBackdoor: mode is ${config.mode}; poisonOnly poisons with wanet.poisonTrainingSet`);
  validateBaseConfig(config, train);
  checkWanetFits(config, train);
  checkEligible(o.eligibleIndices, train.labels.length);
  const [h, w, ch] = c.meta.inputShape;
  if (h !== train.height || w !== train.width || ch !== train.channels || c.meta.numClasses !== train.numClasses) {
    throw new Error(`classifier takes ${h}x${w}x${ch} images and ${c.meta.numClasses} classes, ${train.name} is ${train.height}x${train.width}x${train.channels} with ${train.numClasses}`);
  }
  const gridSeed = wanetControlSeed(config, seed);
  const controlPoints = wanetControlPoints(config.k, gridSeed);
  const grid = wanetGrid(controlPoints, config.k, config.s, train);
  const eligible = new Uint8Array(train.labels.length);
  o.eligibleIndices.forEach((i) => (eligible[i] = 1));
  const targetOf = Int32Array.from(train.labels, (y) => attackTargetLabel(config, y, train.numClasses));
  const augment = wanetAugment(config, recipe);
  const range = c.meta.inputRange;
  const per = imageBytes(train);
  const training = recipe.batchNorm === 'train';
  const fast = useFastPath();
  const vars = trainableVariables(c.model);
  const sgd = recipeOptimizer(vars, recipe, fast);
  let batchRng = new Rng(deriveSeed(seed, 'wanet', 'batches'));
  let totals: WanetBatchTotals = { backdoor: 0, cross: 0, clean: 0 };
  let loop;
  try {
    loop = await runEpochs({
      data: train,
      ...recipeSchedule(recipe),
      // the loop's own batch (clean, unaugmented) is not used: step builds the poisoned one
      // from the same indices, since WaNet augments after poisoning
      augment: noAugmentation,
      seed: deriveSeed(seed, 'wanet', 'shuffle'),
      models: { model: c },
      optimizers: { model: sgd },
      carry: {
        save: () => ({ arrays: {}, extra: { batchRng: batchRng.state(), totals: { ...totals } } satisfies Carried }),
        restore: (r) => {
          const saved = r.extra as unknown as Carried;
          batchRng = new Rng(saved.batchRng);
          totals = { ...saved.totals };
        },
      },
      resume: o.resume,
      hooks: o.hooks,
      step: (_x, idx, lr) => {
        const out = new Float32Array(idx.length * per);
        const batch = assembleWanetBatch({
          train,
          indices: idx,
          eligible,
          rate: config.rate,
          crossRatio: config.crossRatio,
          grid,
          targetOf,
          augment,
          rng: batchRng,
          range,
          out,
        });
        totals.backdoor += batch.backdoor.length;
        totals.cross += batch.cross.length;
        totals.clean += idx.length - batch.backdoor.length - batch.cross.length;
        const { value, grads } = tf.variableGrads(
          () =>
            tf.tidy(() => {
              const x = tf.tensor4d(out, [idx.length, train.height, train.width, train.channels]);
              return crossEntropy(applyModel(c.model, x, training, fast) as TF.Tensor2D, tf.tensor1d(batch.labels, 'int32'));
            }),
          vars,
        );
        sgd.step(
          vars.map((v) => grads[v.name]),
          lr,
        );
        tf.dispose(grads);
        return value;
      },
    });
  } finally {
    sgd.dispose();
  }
  const poisoned = wanet.poisonTrainingSet(train, o.eligibleIndices, config, seed);
  const triggerParameters: TriggerParameters = {
    ...poisoned.record.triggerParameters,
    augment,
    trainedBatches: totals,
  };
  poisoned.record.triggerParameters = triggerParameters;
  return { classifier: c, poisoned, triggerParameters, history: loop.history, totals };
}
