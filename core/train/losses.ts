/** Loss functions on logits, each returning the batch mean as a scalar tensor. */
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../tf';

/** Cross-entropy against integer labels. */
export function crossEntropy(logits: TF.Tensor2D, labels: TF.Tensor1D): TF.Scalar {
  return tf.tidy((): TF.Scalar => {
    const logp = tf.logSoftmax(logits);
    const onehot = tf.oneHot(labels, logits.shape[1]);
    return tf.neg(tf.mean(tf.sum(tf.mul(onehot, logp), -1))) as TF.Scalar;
  });
}

/** Cross-entropy against a target distribution: -sum_j q_j log softmax(z)_j. */
export function softCrossEntropy(logits: TF.Tensor2D, target: TF.Tensor2D): TF.Scalar {
  return tf.tidy(() => tf.neg(tf.mean(tf.sum(tf.mul(target, tf.logSoftmax(logits)), -1))) as TF.Scalar);
}

/**
 * KL(p_target || softmax(z / T)) with the target already a distribution, scaled by T^2 so
 * gradients keep their size across temperatures (Hinton et al.).
 */
export function klToTarget(logits: TF.Tensor2D, target: TF.Tensor2D, temperature = 1): TF.Scalar {
  return tf.tidy((): TF.Scalar => {
    const logq = tf.logSoftmax(temperature === 1 ? logits : tf.div(logits, temperature));
    const safeTarget = tf.maximum(target, 1e-12);
    const kl = tf.sum(tf.mul(target, tf.sub(tf.log(safeTarget), logq)), -1);
    return tf.mul(tf.mean(kl), temperature * temperature) as TF.Scalar;
  });
}

/** Negative learning: the label is "not y"; loss -log(1 - p_y). */
export function complementaryLoss(logits: TF.Tensor2D, notLabels: TF.Tensor1D): TF.Scalar {
  return tf.tidy((): TF.Scalar => {
    const p = tf.softmax(logits);
    const py = tf.sum(tf.mul(p, tf.oneHot(notLabels, logits.shape[1])), -1);
    return tf.neg(tf.mean(tf.log(tf.maximum(tf.sub(1, py), 1e-7)))) as TF.Scalar;
  });
}
