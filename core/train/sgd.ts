/**
 * SGD with momentum and weight decay, PyTorch semantics (g' = g + wd*w; v = mu*v + g';
 * w -= lr*v, or with Nesterov w -= lr*(g' + mu*v)), with the momentum buffers exposed so a
 * checkpoint can capture and restore them.
 */
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../tf';
import { useFastPath } from './fast';
import { momentumUpdate } from './fast/sgdUpdate';
import { DEFAULT_WARMUP_FRACTION, type LearningRateSchedule } from './recipe';

export interface SgdOptions {
  momentum: number;
  weightDecay: number;
  /** Nesterov momentum, as torch.optim.SGD(nesterov=True); default false */
  nesterov?: boolean;
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
    const nesterov = this.options.nesterov ?? false;
    if (this.fast) {
      momentumUpdate(this.variables, this.velocities, grads, learningRate, momentum, weightDecay, nesterov);
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
        const direction = nesterov ? tf.add(g, tf.mul(mu, v)) : v;
        w.assign(tf.sub(w, tf.mul(lr, direction)));
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

/** The schedule and its shape parameters (recipe.ts LearningRateSchedule). */
export interface ScheduleSpec {
  schedule: LearningRateSchedule;
  /** oneCycle: share of the steps spent warming up (default 0.3, OneCycleLR's pct_start) */
  warmupFraction?: number;
}

/** oneCycle starts its warm-up at peak / 25 (OneCycleLR's div_factor). */
export const ONE_CYCLE_START_DIVISOR = 25;

/**
 * The learning rate of step `step` (0-based) of `totalSteps`: cosine decay from `peak` to 0,
 * constant, or oneCycle (linear warm-up from peak/25 to peak over the first warmupFraction of
 * the steps, then cosine decay to 0). bench/reference/pytorch_recipe.py computes the same.
 */
export function learningRateAt(schedule: LearningRateSchedule | ScheduleSpec, peak: number, step: number, totalSteps: number): number {
  const spec = typeof schedule === 'string' ? { schedule } : schedule;
  if (spec.schedule === 'constant' || totalSteps <= 0) return peak;
  const s = Math.min(Math.max(step, 0), totalSteps);
  const cosine = (t: number, span: number) => (span <= 0 ? 0 : 0.5 * peak * (1 + Math.cos((Math.PI * Math.min(t, span)) / span)));
  if (spec.schedule === 'cosine') return cosine(s, totalSteps);
  const warmup = Math.round((spec.warmupFraction ?? DEFAULT_WARMUP_FRACTION) * totalSteps);
  if (s < warmup) {
    const start = peak / ONE_CYCLE_START_DIVISOR;
    return start + ((peak - start) * s) / warmup;
  }
  return cosine(s - warmup, totalSteps - warmup);
}

/** tfjs LayerVariables wrap the tf.Variables that gradients are taken against. */
export function trainableVariables(model: TF.LayersModel): TF.Variable[] {
  return model.trainableWeights.map((w) => (w as unknown as { val: TF.Variable }).val);
}
