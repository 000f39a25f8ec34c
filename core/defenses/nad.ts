/**
 * NAD: Neural Attention Distillation (Li et al., ICLR 2021, defenses.md). A teacher is
 * the backdoored model fine-tuned on the clean budget; the backdoored model (the student)
 * is then trained with cross-entropy plus attention distillation from the teacher on the
 * last stages:
 *
 *   A(f)  = v / (||v||_2 + 1e-6),  v = sum_c |f_c|^p   (one value per spatial position)
 *   L     = CE + sum_l beta_l * mean over batch and positions of (A(f_S^l) - A(f_T^l))^2
 *
 * i.e. the mean squared difference of L2-normalised maps, as in the NAD authors' code
 * (the paper writes the L2 distance; the MSE's mean over positions is why beta is in the
 * hundreds). The teacher is frozen and runs in inference mode on the student's batch.
 */
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../tf';
import { deriveSeed } from '../rng';
import type { ImageDataset } from '../data/dataset';
import type { Classifier } from '../models/classifier';
import { cloneClassifier } from '../models/layersFormat';
import type { AugmentOptions } from '../train/augment';
import { runEpochs, type EpochLoopResult } from '../train/epochLoop';
import { applyModelOutputs } from '../train/fast';
import { crossEntropy } from '../train/losses';
import { SgdMomentum, trainableVariables } from '../train/sgd';
import { trainClassifier } from '../train/trainClassifier';
import { heldOutAccuracy } from '../ntml/stages';
import { nadDefenseSchema, type NadDefenseConfig } from './configs';
import type { DefensePlugin, PhaseControl } from './defense';
import { featureStages, withFeatureOutputs } from './features';
import { describeStepBudget, stepBudget } from './budgets';
import { planFineTune } from './fineTune';

/** Attention maps [batch, H*W] of features [batch, H, W, C], each row of unit L2 norm. */
export function attentionMap(f: TF.Tensor4D, power: number): TF.Tensor2D {
  return tf.tidy(() => {
    const [b, h, w] = f.shape;
    const energy = power === 2 ? tf.square(f) : tf.pow(tf.abs(f), power);
    const v = tf.reshape(tf.sum(energy, -1), [b, h * w]);
    // sqrt's gradient is infinite at 0 (an all-zero map); the floor keeps it finite
    const norm = tf.sqrt(tf.maximum(tf.sum(tf.square(v), -1, true), 1e-12));
    return tf.div(v, tf.add(norm, 1e-6)) as TF.Tensor2D;
  });
}

/** Mean squared difference of two batches of attention maps. */
export function attentionLoss(student: TF.Tensor2D, teacher: TF.Tensor2D): TF.Scalar {
  return tf.tidy(() => tf.mean(tf.square(tf.sub(student, teacher))) as TF.Scalar);
}

export interface AttentionDistillationOptions {
  student: Classifier;
  teacher: Classifier;
  data: ImageDataset;
  indices?: Int32Array;
  config: NadDefenseConfig;
  augment: AugmentOptions;
  seed: number;
  select?: () => Promise<number>;
  control?: PhaseControl;
}

/** The student phase: CE + attention distillation, SGD with cosine decay, checkpointed per epoch. */
export async function attentionDistillation(o: AttentionDistillationOptions): Promise<EpochLoopResult> {
  const cfg = o.config;
  const L = cfg.betas.length;
  const student = withFeatureOutputs(o.student.model, featureStages(o.student.model, L).map((s) => s.layer));
  const teacher = withFeatureOutputs(o.teacher.model, featureStages(o.teacher.model, L).map((s) => s.layer));
  const vars = trainableVariables(o.student.model);
  const optimizer = new SgdMomentum(vars, { momentum: cfg.momentum, weightDecay: cfg.weightDecay });
  try {
    return await runEpochs({
      data: o.data,
      indices: o.indices,
      epochs: cfg.epochs,
      batchSize: cfg.batchSize,
      peakLearningRate: cfg.learningRate,
      schedule: 'cosine',
      augment: o.augment,
      seed: o.seed,
      // the teacher is fixed by its own phase, so only the student goes into checkpoints
      models: { student: o.student },
      optimizers: { student: optimizer },
      select: o.select ? { model: 'student', score: o.select } : undefined,
      resume: o.control?.resume,
      hooks: o.control?.hooks,
      step: (x, idx, lr) => {
        const labels = tf.tensor1d(Int32Array.from(idx, (i) => o.data.labels[i]), 'int32');
        const targets = tf.tidy(() =>
          applyModelOutputs(teacher, x, false).slice(0, L).map((f) => attentionMap(f as TF.Tensor4D, cfg.attentionPower)),
        );
        const { value, grads } = tf.variableGrads(
          () =>
            tf.tidy(() => {
              const outs = applyModelOutputs(student, x, true);
              let loss = crossEntropy(outs[L] as TF.Tensor2D, labels);
              for (let l = 0; l < L; l++) {
                const at = attentionLoss(attentionMap(outs[l] as TF.Tensor4D, cfg.attentionPower), targets[l]);
                loss = tf.add(loss, tf.mul(cfg.betas[l], at)) as TF.Scalar;
              }
              return loss;
            }),
          vars,
        );
        optimizer.step(
          vars.map((v) => grads[v.name]),
          lr,
        );
        tf.dispose([grads, labels, targets]);
        return value;
      },
    });
  } finally {
    optimizer.dispose();
  }
}

/** Batches in one pass over n samples, as runEpochs counts them (a trailing single sample is folded in). */
function batchesPerPass(n: number, batchSize: number): number {
  const bs = Math.min(batchSize, n);
  return Math.ceil(n / bs) - (n % bs === 1 && n > 1 ? 1 : 0);
}

export const nad: DefensePlugin<NadDefenseConfig> = {
  name: 'nad',
  description: 'neural attention distillation from a clean-fine-tuned teacher on the last three stages',
  configSchema: nadDefenseSchema,
  defaultCleanBudget: { fraction: 0.05 },
  async run(model, ctx, cfg) {
    const stages = featureStages(model.model, cfg.betas.length);
    const fitSize = ctx.cleanFit.labels.length;
    // the epoch is stepsPerEpoch steps whatever |D_c| (budgets.ts), but never less than one pass:
    // the epoch loop walks a fixed index list, so a shorter list would leave images unused
    const stepsPerEpoch = Math.max(cfg.stepsPerEpoch, batchesPerPass(fitSize, cfg.batchSize));
    const indices = planFineTune(fitSize, { steps: stepsPerEpoch, rounds: 1, batchSize: cfg.batchSize }).indices;
    const heldOut = cfg.selection === 'heldOut';
    const teacher = await cloneClassifier(model);
    try {
      const teacherControl = await ctx.phase('teacher', cfg.teacherEpochs);
      const taught = await trainClassifier({
        classifier: teacher,
        data: ctx.cleanFit,
        indices,
        recipe: {
          epochs: cfg.teacherEpochs,
          batchSize: cfg.batchSize,
          learningRate: cfg.learningRate,
          momentum: cfg.momentum,
          weightDecay: cfg.weightDecay,
          schedule: 'cosine',
          augment: ctx.augment,
          batchNorm: 'train',
        },
        seed: deriveSeed(ctx.seed, 'nad:teacher'),
        select: heldOut ? heldOutAccuracy(teacher, ctx.cleanHeldOut) : undefined,
        ...teacherControl,
      });
      const teacherAccuracy = await heldOutAccuracy(teacher, ctx.cleanHeldOut)();

      const studentControl = await ctx.phase('student', cfg.epochs);
      const distilled = await attentionDistillation({
        student: model,
        teacher,
        data: ctx.cleanFit,
        indices,
        config: cfg,
        augment: ctx.augment,
        seed: deriveSeed(ctx.seed, 'nad:student'),
        select: heldOut ? heldOutAccuracy(model, ctx.cleanHeldOut) : undefined,
        control: studentControl,
      });
      const rule = heldOut
        ? 'the epoch with the best accuracy on the held-out clean slice'
        : 'the last epoch (fixed in advance, as in NAD)';
      return {
        model,
        history: { teacher: taught.history, student: distilled.history },
        selectionRule: `teacher (${cfg.teacherEpochs} epochs) and student (${cfg.epochs} epochs): ${rule}`,
        details: {
          stages: stages.map((s) => s.layer.name).join(','),
          betas: cfg.betas,
          stepsPerEpoch,
          optimisationSteps: (cfg.teacherEpochs + cfg.epochs) * stepsPerEpoch,
          stepBudget: describeStepBudget(stepBudget(cfg)),
          teacherSelectedEpoch: taught.selectedEpoch,
          teacherHeldOutAccuracy: teacherAccuracy,
          selectedEpoch: distilled.selectedEpoch,
          heldOutAccuracy: await heldOutAccuracy(model, ctx.cleanHeldOut)(),
        },
      };
    } finally {
      teacher.model.dispose();
    }
  },
};
