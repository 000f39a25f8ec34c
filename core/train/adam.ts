/**
 * Adam (Kingma & Ba 2015) with PyTorch semantics and no weight decay:
 *   m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;  w -= lr * (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps)
 * with the moment buffers and the step count exposed, so a checkpoint can capture and
 * restore the optimiser exactly (the same contract as SgdMomentum: state() / restore()).
 */
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../tf';
import type { NamedArray } from './sgd';

export interface AdamOptions {
  beta1?: number;
  beta2?: number;
  epsilon?: number;
}

export class Adam {
  private readonly first: TF.Variable[];
  private readonly second: TF.Variable[];
  private steps = 0;
  private readonly beta1: number;
  private readonly beta2: number;
  private readonly epsilon: number;

  constructor(private readonly variables: TF.Variable[], options: AdamOptions = {}) {
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.999;
    this.epsilon = options.epsilon ?? 1e-8;
    this.first = tf.tidy(() => variables.map((v) => tf.variable(tf.zerosLike(v), false)));
    this.second = tf.tidy(() => variables.map((v) => tf.variable(tf.zerosLike(v), false)));
  }

  /** Optimiser steps taken so far (t in the bias corrections). */
  get stepCount(): number {
    return this.steps;
  }

  step(grads: TF.Tensor[], learningRate: number): void {
    if (grads.length !== this.variables.length) {
      throw new Error(`Adam.step got ${grads.length} gradients for ${this.variables.length} variables`);
    }
    this.steps += 1;
    const { beta1, beta2, epsilon } = this;
    const c1 = 1 - beta1 ** this.steps;
    const c2 = 1 - beta2 ** this.steps;
    tf.tidy(() => {
      this.variables.forEach((w, i) => {
        const g = grads[i];
        const m = tf.add(tf.mul(beta1, this.first[i]), tf.mul(1 - beta1, g));
        const v = tf.add(tf.mul(beta2, this.second[i]), tf.mul(1 - beta2, tf.square(g)));
        this.first[i].assign(m);
        this.second[i].assign(v);
        const update = tf.div(tf.div(m, c1), tf.add(tf.sqrt(tf.div(v, c2)), epsilon));
        w.assign(tf.sub(w, tf.mul(learningRate, update)));
      });
    });
  }

  /** [step count as a one-element array, first moments..., second moments...] */
  state(): NamedArray[] {
    const read = (v: TF.Variable) => ({ shape: v.shape.slice(), values: v.dataSync().slice() as Float32Array });
    return [{ shape: [1], values: Float32Array.of(this.steps) }, ...this.first.map(read), ...this.second.map(read)];
  }

  restore(state: NamedArray[]): void {
    const n = this.variables.length;
    if (state.length !== 1 + 2 * n) throw new Error(`Adam state has ${state.length} arrays, the variables need ${1 + 2 * n}`);
    const steps = state[0].values[0];
    if (!Number.isInteger(steps) || steps < 0) throw new Error(`Adam state: step count ${steps} is not a non-negative integer`);
    [...this.first, ...this.second].forEach((buffer, i) => {
      const s = state[1 + i];
      if (s.shape.join('x') !== buffer.shape.join('x')) {
        throw new Error(`Adam buffer ${i} has shape ${s.shape}, expected ${buffer.shape}`);
      }
      const t = tf.tensor(s.values, s.shape);
      buffer.assign(t);
      t.dispose();
    });
    this.steps = steps;
  }

  dispose(): void {
    tf.dispose([...this.first, ...this.second]);
  }
}
