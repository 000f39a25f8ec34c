/**
 * ReLU whose gradient is TensorFlow's ReluGrad kernel: one pass over the activations where
 * tfjs differentiates relu as dy * cast(step(x)), and tfjs-node composes step from
 * IsNan, Greater, Fill and Select (about six full-size ops per layer per step).
 */
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../../tf';
import { attr, runNative } from './native';

const fastReluOp = tf.customGrad((...args: unknown[]) => {
  const [x, save] = args as [TF.Tensor, (ts: TF.Tensor[]) => void];
  const y = tf.relu(x);
  // relu(x) > 0 exactly where x > 0, so the output serves as ReluGrad's "features" and x can be freed
  save([y]);
  return {
    value: y,
    gradFunc: (dy: TF.Tensor, saved: TF.Tensor[]) => runNative('ReluGrad', [attr.float32Type('T')], [dy, saved[0]], 1)[0],
  };
});

export function fastRelu<T extends TF.Tensor>(x: T): T {
  return fastReluOp(x) as T;
}
