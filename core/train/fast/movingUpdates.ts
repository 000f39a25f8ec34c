/**
 * The BN moving-statistics updates of one training forward, all layers' in seven native calls
 * (three concatenations or a split, four elementwise ops) instead of six or seven per layer.
 * The values are tfjs-layers' BatchNormalization.call's, element by element: variance' = variance * (n-1)/n (TensorFlow's batch variance carries Bessel's
 * correction, tf.moments' does not), then moving - (moving - batch) * (1 - momentum) with the
 * decay rounded to float32 (doMovingAverage). The per-layer factors become per-element vectors,
 * so every element meets the same float32 operands as before: no reassociation.
 */
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../../tf';
import { nativeMath } from './native';

/** tfjs-layers internals the fast path reads; typed here because the public typings hide them. */
export interface LayerVariableRef {
  read(): TF.Tensor;
  write(value: TF.Tensor): unknown;
}
export interface BatchNormInternals {
  axis: number;
  momentum: number;
  epsilon: number;
  gamma?: LayerVariableRef;
  beta?: LayerVariableRef;
  movingMean: LayerVariableRef;
  movingVariance: LayerVariableRef;
}

interface Pending {
  bn: BatchNormInternals;
  mean: TF.Tensor1D;
  /** Bessel-corrected, as FusedBatchNormV3 returns it */
  variance: TF.Tensor1D;
  count: number;
}

export class MovingUpdates {
  private pending: Pending[] = [];

  /** Queues one layer's batch statistics (kept tensors: flush or dispose frees them). */
  add(bn: BatchNormInternals, mean: TF.Tensor1D, variance: TF.Tensor1D, count: number): void {
    // a layer applied twice in one forward updates twice, in order: the first update lands first
    if (this.pending.some((p) => p.bn === bn)) this.flush();
    this.pending.push({ bn, mean, variance, count });
  }

  /** Writes every queued layer's new moving mean and variance. */
  flush(): void {
    const pending = this.pending;
    if (pending.length === 0) return;
    const { sub, mul, concat1d, split1d } = nativeMath;
    tf.tidy(() => {
      const channels = pending.map((p) => p.mean.size);
      // [every mean, every variance], in the order of `pending` (so at least the two inputs
      // ConcatV2 requires), and one factor per element: 1 for a mean (x * 1 is x), (n-1)/n for a variance
      const layout = [...pending.map((p, i) => ({ p, c: channels[i], mean: true })), ...pending.map((p, i) => ({ p, c: channels[i], mean: false }))];
      const perElement = (f: (e: (typeof layout)[number]) => number) => {
        const out = new Float32Array(2 * channels.reduce((s, c) => s + c, 0));
        let at = 0;
        for (const e of layout) {
          out.fill(f(e), at, at + e.c);
          at += e.c;
        }
        return tf.tensor1d(out);
      };
      const bessel = perElement((e) => (e.mean || e.p.count <= 1 ? 1 : (e.p.count - 1) / e.p.count));
      const decay = perElement((e) => 1 - e.p.bn.momentum);
      const batch = mul(concat1d([...pending.map((p) => p.mean), ...pending.map((p) => p.variance)]), bessel);
      const moving = concat1d([...pending.map((p) => p.bn.movingMean.read()), ...pending.map((p) => p.bn.movingVariance.read())]);
      const updated = split1d(sub(moving, mul(sub(moving, batch), decay)), layout.map((e) => e.c));
      pending.forEach((p, i) => {
        p.bn.movingMean.write(updated[i]);
        p.bn.movingVariance.write(updated[pending.length + i]);
      });
    });
    this.dispose();
  }

  /** Frees the queued statistics without writing them (after a failed forward). */
  dispose(): void {
    for (const p of this.pending) {
      p.mean.dispose();
      p.variance.dispose();
    }
    this.pending = [];
  }
}
