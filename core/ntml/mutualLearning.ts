/**
 * Mutual learning (Deep Mutual Learning, Zhang et al. 2018) of the NT student S and the
 * teacher T on the small clean set: each learns from the labels and from the other's
 * softened prediction on the same augmented batch. Both updates use the pre-step outputs
 * of the other model (simultaneous DML). `oneWay` updates only S (plain distillation).
 */
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../tf';
import type { ImageDataset } from '../data/dataset';
import type { Classifier } from '../models/classifier';
import { applyModel } from '../train/fast';
import { SgdMomentum, trainableVariables } from '../train/sgd';
import { crossEntropy, klToTarget } from '../train/losses';
import { runEpochs, type EpochHooks, type EpochLoopResult } from '../train/epochLoop';
import type { TrainingCheckpoint } from '../train/checkpoint';
import type { AugmentOptions } from '../train/augment';
import { mlLearningRate, type NtmlConfig } from './config';

export interface MutualLearningOptions {
  student: Classifier;
  teacher: Classifier;
  /** the clean records used for fitting (D_c minus the held-out slice; all of D_c in a refit) */
  clean: ImageDataset;
  config: NtmlConfig;
  /** the data set's augmentation (flip only where it keeps the class) */
  augment: AugmentOptions;
  seed: number;
  /** held-out accuracy of the student (selection; higher is better); absent in a refit */
  select?: () => Promise<number>;
  /** a refit: the first epochs of the `mlEpochs` schedule, no selection */
  stopAfterEpoch?: number;
  diagnostics?: (epoch: number) => Promise<Record<string, number>>;
  resume?: TrainingCheckpoint;
  hooks?: EpochHooks;
}

export async function mutualLearning(o: MutualLearningOptions): Promise<EpochLoopResult> {
  const cfg = o.config;
  const oneWay = cfg.ml === 'oneWay';
  const training = cfg.mlBatchNorm === 'train';
  const tau = cfg.mlTau;
  const lambda = cfg.lambda;
  const sVars = trainableVariables(o.student.model);
  const tVars = trainableVariables(o.teacher.model);
  const sgd = { momentum: 0.9, weightDecay: 5e-4 };
  const sOpt = new SgdMomentum(sVars, sgd);
  const tOpt = new SgdMomentum(tVars, sgd);
  const soften = (z: TF.Tensor2D) => tf.softmax(tau === 1 ? z : tf.div(z, tau)) as TF.Tensor2D;

  try {
    return await runEpochs({
      data: o.clean,
      epochs: cfg.mlEpochs,
      stopAfterEpoch: o.stopAfterEpoch,
      batchSize: cfg.mlBatchSize,
      peakLearningRate: mlLearningRate(cfg),
      schedule: 'cosine',
      augment: o.augment,
      seed: o.seed,
      models: { student: o.student, teacher: o.teacher },
      optimizers: oneWay ? { student: sOpt } : { student: sOpt, teacher: tOpt },
      select: o.select ? { model: 'student', score: o.select, includeInitial: true } : undefined,
      diagnostics: o.diagnostics,
      resume: o.resume,
      hooks: o.hooks,
      step: (x, idx, lr) => {
        const labels = tf.tensor1d(Int32Array.from(idx, (i) => o.clean.labels[i]), 'int32');
        let pStudent: TF.Tensor2D | undefined;
        // T's forward inside S's tape is a constant for S (no S variable feeds it). It runs in
        // inference mode so T's BN statistics are updated once per step, by T's own pass.
        const s = tf.variableGrads(() => {
          const zS = applyModel(o.student.model, x, training) as TF.Tensor2D;
          const pT = soften(applyModel(o.teacher.model, x, false) as TF.Tensor2D);
          pStudent = tf.keep(soften(zS));
          return tf.add(crossEntropy(zS, labels), tf.mul(lambda, klToTarget(zS, pT, tau))) as TF.Scalar;
        }, sVars);
        if (!oneWay) {
          // pStudent holds S's pre-update prediction: DML's simultaneous update.
          const t = tf.variableGrads(() => {
            const zT = applyModel(o.teacher.model, x, training) as TF.Tensor2D;
            return tf.add(crossEntropy(zT, labels), tf.mul(lambda, klToTarget(zT, pStudent!, tau))) as TF.Scalar;
          }, tVars);
          tOpt.step(tVars.map((v) => t.grads[v.name]), lr);
          tf.dispose(t.grads);
          t.value.dispose();
        }
        sOpt.step(sVars.map((v) => s.grads[v.name]), lr);
        tf.dispose(s.grads);
        tf.dispose([labels, pStudent!]);
        return s.value;
      },
    });
  } finally {
    sOpt.dispose();
    tOpt.dispose();
  }
}
