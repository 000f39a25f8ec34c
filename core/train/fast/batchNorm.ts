/**
 * Batch normalization as TensorFlow's fused kernels: FusedBatchNormV3 forward and
 * FusedBatchNormGradV3 backward (NHWC, channels last). tfjs-layers composes the training-mode
 * forward from moments + batchNorm and differentiates that composition op by op (a dozen
 * full-size Multiply/Sub/RealDiv/Sum ops per layer); the fused pair does the same maths in
 * two passes over the activations.
 */
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../../tf';
import { attr, runNative } from './native';

export interface FusedBatchNormResult {
  y: TF.Tensor4D;
  /**
   * training mode only: the batch mean and the biased batch variance (what tf.moments returns);
   * the caller disposes them. With `besselVariance`, batchVariance is TensorFlow's own output,
   * n/(n-1) times the biased one, and `count` is n, so the caller can correct many layers' at once.
   */
  batchMean?: TF.Tensor1D;
  batchVariance?: TF.Tensor1D;
  count?: number;
}

const attrs = (epsilon: number, training: boolean) => [
  attr.float32Type('T'),
  attr.float32Type('U'),
  attr.float('epsilon', epsilon),
  attr.string('data_format', 'NHWC'),
  attr.bool('is_training', training),
];

/**
 * y = gamma * (x - mean) / sqrt(var + epsilon) + beta per channel (last axis of a 4-D x),
 * with the batch's statistics in training mode and the given moving ones otherwise,
 * differentiable in x, gamma and beta.
 */
export function fusedBatchNorm(
  x: TF.Tensor4D,
  gamma: TF.Tensor1D,
  beta: TF.Tensor1D,
  movingMean: TF.Tensor1D,
  movingVariance: TF.Tensor1D,
  epsilon: number,
  training: boolean,
  options: { besselVariance?: boolean } = {},
): FusedBatchNormResult {
  const result: Partial<FusedBatchNormResult> = {};
  const op = tf.customGrad((...args: unknown[]) => {
    const [xIn, g, b, save] = args as [TF.Tensor4D, TF.Tensor1D, TF.Tensor1D, (ts: TF.Tensor[]) => void];
    // in training mode (exponential_avg_factor 1) the statistics inputs are read for neither
    // output nor shape; the moving ones are passed rather than two new empty tensors per call
    const [y, mean, variance, reserve1, reserve2, reserve3] = runNative(
      'FusedBatchNormV3',
      attrs(epsilon, training),
      [xIn, g, b, movingMean, movingVariance],
      6,
    );
    if (training) {
      // output 2 carries Bessel's correction (n/(n-1)) on every device; tfjs-layers' moving
      // variance follows the biased tf.moments variance, so undo it
      const n = xIn.size / xIn.shape[3];
      result.batchMean = tf.keep(mean as TF.Tensor1D);
      if (options.besselVariance) {
        result.batchVariance = tf.keep(variance as TF.Tensor1D);
        result.count = n;
      } else {
        result.batchVariance = tf.keep(n > 1 ? tf.mul(variance, (n - 1) / n) : variance) as TF.Tensor1D;
      }
      // TensorFlow's own gradient passes the forward's reserve spaces in training mode and
      // the population statistics in inference mode (nn_grad.py, _BaseFusedBatchNormGrad)
      save([xIn, g, reserve1, reserve2, reserve3]);
    } else {
      save([xIn, g, movingMean, movingVariance, reserve3]);
    }
    const gradFunc = (dy: TF.Tensor, saved: TF.Tensor[]) => {
      const [dx, dGamma, dBeta, extra1, extra2] = runNative(
        'FusedBatchNormGradV3',
        attrs(epsilon, training),
        [dy, ...saved],
        5,
      );
      extra1.dispose();
      extra2.dispose();
      return [dx, dGamma, dBeta];
    };
    return { value: y, gradFunc };
  });
  result.y = op(x, gamma, beta) as TF.Tensor4D;
  return result as FusedBatchNormResult;
}
