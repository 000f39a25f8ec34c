/**
 * The SGD-with-momentum update as bare TensorFlow ops: per variable
 *   v <- AddN(mu * v, g, wd * w);  w <- w - lr * v
 * or, with Nesterov, w <- w - lr * AddN(g, wd * w, mu * v) (torch.optim.SGD(nesterov=True)).
 * The maths is core/train/sgd.ts's (PyTorch semantics) with one AddN in place of two adds.
 * Skipping the tfjs engine roughly halves the update's cost: about 390 engine ops per
 * ResNet-20 step, each with kernel lookup, tape check and scope bookkeeping, become native ops.
 *
 * Variables of the same shape are updated together: their weights, velocities and gradients are
 * stacked (Pack), the five ops run once on the stacks, and the results are unstacked (Unpack) into
 * the variables. Each element meets the same operands in the same order as in its own update, so
 * the values are identical; a group of n costs 10 native calls instead of 5n (resnet20: 65
 * variables in 13 shapes, 95 calls per step instead of 325). The new values replace the variables'
 * buffers via assign, as tfjs does.
 */
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../../tf';
import { attr, nativeMath, runNative } from './native';

const pack = (ts: TF.Tensor[]): TF.Tensor =>
  runNative('Pack', [attr.float32Type('T'), attr.int('N', ts.length), attr.int('axis', 0)], ts, 1)[0];
const unpack = (t: TF.Tensor, n: number): TF.Tensor[] =>
  runNative('Unpack', [attr.float32Type('T'), attr.int('num', n), attr.int('axis', 0)], [t], n);

/** Indices of the variables, grouped by shape (first appearance order). */
function groupsByShape(variables: TF.Variable[]): number[][] {
  const groups = new Map<string, number[]>();
  variables.forEach((v, i) => {
    const key = v.shape.join('x');
    const g = groups.get(key);
    if (g) g.push(i);
    else groups.set(key, [i]);
  });
  return [...groups.values()];
}

export function momentumUpdate(
  variables: TF.Variable[],
  velocities: TF.Variable[],
  grads: TF.Tensor[],
  learningRate: number,
  momentum: number,
  weightDecay: number,
  nesterov = false,
  /** false: one variable at a time (the update before grouping; tests compare the two) */
  grouped = true,
): void {
  const { mul, sub, addN } = nativeMath;
  tf.tidy(() => {
    const lr = tf.scalar(learningRate);
    const mu = tf.scalar(momentum);
    const wd = tf.scalar(weightDecay);
    // one variable's update, or a stack's: returns the new velocity and weight
    const update = (w: TF.Tensor, velocity: TF.Tensor, g: TF.Tensor) => {
      const terms = [mul(mu, velocity), g];
      if (weightDecay > 0) terms.push(mul(wd, w));
      const v = addN(terms);
      // Nesterov steps along the decayed gradient plus the updated velocity's momentum term
      const direction = nesterov ? addN([...terms.slice(1), mul(mu, v)]) : v;
      return { v, w: sub(w, mul(lr, direction)) };
    };
    const groups = grouped ? groupsByShape(variables) : variables.map((_, i) => [i]);
    for (const group of groups) {
      if (group.length === 1) {
        const i = group[0];
        const r = update(variables[i], velocities[i], grads[i]);
        velocities[i].assign(r.v as TF.Variable);
        variables[i].assign(r.w as TF.Variable);
        continue;
      }
      const r = update(
        pack(group.map((i) => variables[i])),
        pack(group.map((i) => velocities[i])),
        pack(group.map((i) => grads[i])),
      );
      const vs = unpack(r.v, group.length);
      const ws = unpack(r.w, group.length);
      group.forEach((i, k) => {
        velocities[i].assign(vs[k] as TF.Variable);
        variables[i].assign(ws[k] as TF.Variable);
      });
    }
  });
}
