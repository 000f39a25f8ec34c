/**
 * The residual sum a + b of two same-shape tensors, as one Add kernel whose gradient hands dy to
 * both inputs. tfjs-layers' Add layer computes the same sum as clone(a) + b: the clone costs an
 * engine Identity forward and a native Cast backward, and tf.add's gradient reshapes dy to each
 * input's shape (a native Reshape per input, a no-op in values). On tfjs-node the clone shares
 * its buffer, so what goes is calls, not copies: 3 native calls and 2 engine kernels per add.
 */
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../../tf';

const addOp = tf.customGrad((...args: unknown[]) => {
  const [a, b] = args as [TF.Tensor, TF.Tensor];
  return {
    value: tf.add(a, b),
    // two tensor objects (one buffer): the tape disposes each input's gradient on its own
    gradFunc: (dy: TF.Tensor) => [dy, dy.clone()],
  };
});

export function residualAdd<T extends TF.Tensor>(a: T, b: T): T {
  return addOp(a, b) as T;
}
