/**
 * SGD with momentum and weight decay, PyTorch semantics (v = mu*v + g + wd*w; w -= lr*v),
 * with the momentum buffers exposed so a checkpoint can capture and restore them.
 */
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../tf';
import { useFastPath } from './fast';
import { momentumUpdate } from './fast/sgdUpdate';

export interface SgdOptions {
  momentum: number;
  weightDecay: number;
  /** update with bare TensorFlow ops (core/train/fast); default: the fast path setting (NTML_FAST_PATH) */
  fast?: boolean;
}

export interface NamedArray {
  shape: number[];
  values: Float32Array;
}

export class SgdMomentum {
  private velocities: TF.Variable[];
  private readonly fast: boolean;

  constructor(private readonly variables: TF.Variable[], private readonly options: SgdOptions) {
    // tidy disposes the zerosLike temporaries; the variables are not tracked by it and survive
    this.velocities = tf.tidy(() => variables.map((v) => tf.variable(tf.zerosLike(v), false)));
    this.fast = useFastPath(options.fast);
  }

  step(grads: TF.Tensor[], learningRate: number): void {
    const { momentum, weightDecay } = this.options;
    if (this.fast) {
      momentumUpdate(this.variables, this.velocities, grads, learningRate, momentum, weightDecay);
      return;
    }
    tf.tidy(() => {
      const lr = tf.scalar(learningRate);
      const mu = tf.scalar(momentum);
      const wd = tf.scalar(weightDecay);
      this.variables.forEach((w, i) => {
        const g = weightDecay > 0 ? tf.add(grads[i], tf.mul(wd, w)) : grads[i];
        const v = tf.add(tf.mul(mu, this.velocities[i]), g);
        this.velocities[i].assign(v);
        w.assign(tf.sub(w, tf.mul(lr, v)));
      });
    });
  }

  state(): NamedArray[] {
    return this.velocities.map((v) => ({ shape: v.shape.slice(), values: v.dataSync() as Float32Array }));
  }

  restore(state: NamedArray[]): void {
    if (state.length !== this.velocities.length) {
      throw new Error(`optimizer state has ${state.length} buffers, the model needs ${this.velocities.length}`);
    }
    state.forEach((s, i) => {
      const v = this.velocities[i];
      if (s.shape.join('x') !== v.shape.join('x')) {
        throw new Error(`optimizer buffer ${i} has shape ${s.shape}, expected ${v.shape}`);
      }
      const t = tf.tensor(s.values, s.shape);
      v.assign(t);
      t.dispose();
    });
  }

  dispose(): void {
    tf.dispose(this.velocities);
  }
}

/** Cosine decay from `peak` to 0 over `totalSteps` (per step), or constant. */
export function learningRateAt(schedule: 'cosine' | 'constant', peak: number, step: number, totalSteps: number): number {
  if (schedule === 'constant' || totalSteps <= 0) return peak;
  return 0.5 * peak * (1 + Math.cos((Math.PI * Math.min(step, totalSteps)) / totalSteps));
}

/** tfjs LayerVariables wrap the tf.Variables that gradients are taken against. */
export function trainableVariables(model: TF.LayersModel): TF.Variable[] {
  return model.trainableWeights.map((w) => (w as unknown as { val: TF.Variable }).val);
}
