/**
 * Supervised training of one classifier: hard labels, soft targets, complementary
 * ("not this class") labels, or distillation from a frozen teacher on the same augmented
 * batch. Standard training, NT student training and split distillation all run through here.
 */
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../tf';
import type { ImageDataset } from '../data/dataset';
import type { Classifier } from '../models/classifier';
import { trainableVariables } from './sgd';
import { recipeOptimizer, recipeSchedule } from './recipeRun';
import { crossEntropy, softCrossEntropy, complementaryLoss, klToTarget } from './losses';
import { runEpochs, type EpochHooks, type EpochLoopResult } from './epochLoop';
import type { TrainingCheckpoint } from './checkpoint';
import type { TrainRecipe } from './recipe';
import { applyModel, useFastPath } from './fast';

export { TrainRecipe } from './recipe';

export type TrainingTargets =
  | { kind: 'hard'; labels: Int32Array }
  | { kind: 'soft'; probs: Float32Array }
  | { kind: 'negative'; labels: Int32Array }
  | { kind: 'distill'; teacher: Classifier; temperature: number };

export interface TrainClassifierOptions {
  classifier: Classifier;
  data: ImageDataset;
  indices?: Int32Array;
  targets?: TrainingTargets;
  recipe: TrainRecipe;
  /** train only the first epochs of the recipe's schedule (a refit; see runEpochs) */
  stopAfterEpoch?: number;
  seed: number;
  /** held-out selection: the epoch with the highest score is kept */
  select?: () => Promise<number>;
  /** let selection keep the starting weights if no epoch beats them */
  selectIncludesStart?: boolean;
  diagnostics?: (epoch: number) => Promise<Record<string, number>>;
  resume?: TrainingCheckpoint;
  hooks?: EpochHooks;
  /** after every optimiser step, e.g. to re-apply a pruning mask */
  afterStep?: () => void;
  /** fused BN/ReLU kernels and native SGD update (core/train/fast); default: NTML_FAST_PATH, on unless 0 */
  fastPath?: boolean;
}

function batchLoss(
  targets: TrainingTargets,
  logits: TF.Tensor2D,
  x: TF.Tensor4D,
  idx: Int32Array,
  k: number,
): TF.Scalar {
  switch (targets.kind) {
    case 'hard':
      return crossEntropy(logits, tf.tensor1d(gather(targets.labels, idx), 'int32'));
    case 'negative':
      return complementaryLoss(logits, tf.tensor1d(gather(targets.labels, idx), 'int32'));
    case 'soft': {
      const q = new Float32Array(idx.length * k);
      idx.forEach((i, r) => q.set(targets.probs.subarray(i * k, (i + 1) * k), r * k));
      return softCrossEntropy(logits, tf.tensor2d(q, [idx.length, k]));
    }
    case 'distill': {
      const t = targets.temperature;
      const teacherProbs = tf.tidy(() => {
        const z = applyModel(targets.teacher.model, x, false) as TF.Tensor2D;
        return tf.softmax(t === 1 ? z : tf.div(z, t)) as TF.Tensor2D;
      });
      return klToTarget(logits, teacherProbs, t);
    }
  }
}

function gather(values: Int32Array, idx: Int32Array): Int32Array {
  const out = new Int32Array(idx.length);
  for (let i = 0; i < idx.length; i++) out[i] = values[idx[i]];
  return out;
}

export async function trainClassifier(o: TrainClassifierOptions): Promise<EpochLoopResult> {
  const { classifier: c, recipe } = o;
  const targets = o.targets ?? { kind: 'hard', labels: o.data.labels };
  const k = c.meta.numClasses;
  const vars = trainableVariables(c.model);
  const fast = useFastPath(o.fastPath);
  const optimizer = recipeOptimizer(vars, recipe, fast);
  const training = recipe.batchNorm === 'train';
  try {
    return await runEpochs({
      data: o.data,
      indices: o.indices,
      ...recipeSchedule(recipe),
      stopAfterEpoch: o.stopAfterEpoch,
      augment: recipe.augment,
      seed: o.seed,
      models: { model: c },
      optimizers: { model: optimizer },
      select: o.select ? { model: 'model', score: o.select, includeInitial: o.selectIncludesStart } : undefined,
      diagnostics: o.diagnostics,
      resume: o.resume,
      hooks: o.hooks,
      step: (x, idx, lr) => {
        const { value, grads } = tf.variableGrads(
          () => tf.tidy(() => batchLoss(targets, applyModel(c.model, x, training, fast) as TF.Tensor2D, x, idx, k)),
          vars,
        );
        optimizer.step(
          vars.map((v) => grads[v.name]),
          lr,
        );
        tf.dispose(grads);
        o.afterStep?.();
        return value;
      },
    });
  } finally {
    optimizer.dispose();
  }
}
