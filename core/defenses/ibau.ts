/**
 * I-BAU: Implicit Backdoor Adversarial Unlearning (Zeng et al., ICLR 2022).
 *
 * Minimax unlearning on the clean budget. Each round:
 *  - inner maximisation: a universal perturbation delta (one image, added to every clean
 *    sample) ascends CE(f(x + delta), y) - penalty * ||delta||^2, i.e. gradient descent on
 *    L_in(delta, theta) = penalty * ||delta||^2 - CE; it is then projected on an L2 ball;
 *  - outer minimisation: Adam steps on the model to minimise L_out = CE(f(x + delta*), y),
 *    with the implicit hypergradient that accounts for delta* moving with theta.
 *
 * delta* is the fixed point of the gradient-descent map Phi(delta, theta) = delta - eta *
 * grad_delta L_in, so by the implicit function theorem
 *   dL_out/dtheta = d_theta L_out + (d_theta Phi)^T v,   v = (I - d_delta Phi^T)^-1 d_delta L_out,
 * with v approximated by K fixed-point iterations v <- d_delta Phi^T v + d_delta L_out
 * from v = 0 (d_delta Phi = I - eta * H, H the Hessian of L_in in delta) and
 * (d_theta Phi)^T v = -eta * grad_theta <grad_delta L_in, v>.
 *
 * Both second-order products are computed as the authors' autograd computes them (`secondOrder:
 * frozenPattern`, the default; issue 19). On the ReLU / max-pool / inference-BN models I-BAU runs,
 * double backward differentiates with the activation pattern (ReLU on/off, each max-pool window's
 * winner) held at the base point: the network is then affine in its input, H v is exactly
 * 2 penalty v - D^T (1/n) sum_i J_i^T S_i J_i D v (S_i the softmax-CE Hessian, D the input's
 * derivative in delta), and the mixed product the theta-gradient of <grad_delta L_in, v> with the
 * pattern held. tfjs has no second derivatives of its conv / pooling backprop kernels, so both are
 * built from forwards with the pattern recorded on one pass and frozen on the next
 * (core/train/fast/activationPattern.ts): J D v is a difference of frozen-pattern logits (exact for
 * any step), then one first-order backward each (frozenPatternHvp, frozenPatternMixedProduct).
 * They agree with PyTorch autograd to ~1e-7 (H v) and ~1e-6 (mixed) on smallCnn
 * (bench/reference/ibauSecondOrder.ts). Models with a layer that is not piecewise linear are refused
 * by layer name; `secondOrder: finiteDifference` keeps the products of before, central differences
 * of first-order gradients along v:
 *   H v ~ ||v|| (g_delta(delta + t u) - g_delta(delta - t u)) / 2t,  u = v / ||v||
 *   grad_theta <grad_delta L_in, v> ~ ||v|| (g_theta(delta + t u) - g_theta(delta - t u)) / 2t
 * t moves every pixel by 1e-3 of the input range (RMS). On a smooth model they are the derivatives to
 * about 1e-3; on ReLU / max-pool models they are not: every unit that switches between delta - t u and
 * delta + t u adds a jump to the gradient, and both products change by about their own size from t
 * to t/4 or 4t (docs/performance.md, "I-BAU and ANP on the input-gradient path").
 *
 * Only the weights' update needs weight gradients. The gradients to delta (inner steps, H v) run
 * on the model's input-gradient forward (convolutions unfused, so their backward skips the filter
 * gradients): the frozen-pattern H v's forwards and backward, and the finite-difference H v, whose
 * two points go through one forward and backward of the batch stacked on itself (same numbers, bit
 * for bit, as the reference path, `UnlearnOptions.reference`). The clip of x + delta is a kink too:
 * the frozen-pattern products hold it as autograd does (a pixel on a bound still moves).
 *
 * delta is measured in standardised-input units, a quarter of the input range: the authors
 * work on per-channel standardised CIFAR-10 (std ~0.25 of the [0, 1] range), so their
 * constants (inner step 10, L2 radius 10, penalty 0.001, eta 0.1) keep their meaning for
 * every input encoding; x + delta is clipped to the valid range. BN runs in inference mode: its moving statistics are frozen (a
 * training-mode forward would update them with perturbed data on every extra forward);
 * gamma and beta are trained like every other weight.
 */
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../tf';
import { deriveSeed, Rng } from '../rng';
import type { Classifier, InputRange } from '../models/classifier';
import { predictLabels } from '../models/classifier';
import { accuracy } from '../metrics';
import type { ImageDataset } from '../data/dataset';
import { Adam } from '../train/adam';
import { modelWeights, setModelWeights, type TrainingCheckpoint } from '../train/checkpoint';
import { TrainingCancelledError, type EpochRecord } from '../train/epochLoop';
import { crossEntropy } from '../train/losses';
import { trainableVariables } from '../train/sgd';
import { describeStepBudget, stepBudget } from './budgets';
import { ibauDefenseSchema, type IbauDefenseConfig } from './configs';
import type { DefensePlugin, PhaseControl } from './defense';
import { batchTensors, passBatches } from './batches';
import { ActivationPattern, applyModel, applyModelForInputGradients, applyModelWithPattern, assertFrozenPatternModel } from '../train/fast';

/** Input-range width per unit of delta (see the file comment). */
export const DELTA_UNIT = 0.25;

/** RMS per-pixel finite-difference step in delta units: 1e-3 of the input range (see the file comment). */
export const FD_RMS_STEP = 1e-3 / DELTA_UNIT;

export function inputBounds(range: InputRange): { low: number; high: number } {
  switch (range) {
    case '0-1':
      return { low: 0, high: 1 };
    case '0-255':
      return { low: 0, high: 255 };
    case '-1-1':
      return { low: -1, high: 1 };
  }
}

/** One batch of the unlearning problem: the model as a function of its variables, and the data. */
export interface UnlearningBatch {
  /** logits; must not update any state (inference-mode BN) */
  forward: (x: TF.Tensor4D) => TF.Tensor2D;
  /**
   * The same logits on a path whose backward computes input gradients only (the weights held
   * constant: applyModelForInputGradients), for the losses I-BAU differentiates to delta alone.
   * Present, the gradients to delta and H v run on it, H v's two finite-difference points in one
   * forward of a doubled batch; absent, on `forward`, one point at a time (the reference path).
   */
  inputGradientForward?: (x: TF.Tensor4D) => TF.Tensor2D;
  /**
   * The logits with the model's ReLU / max-pool pattern recorded into `pattern` (its first forward)
   * or frozen to it (later ones): applyModelWithPattern. Needed by the frozen-pattern products.
   */
  patternForward?: (x: TF.Tensor4D, pattern: ActivationPattern, inputGradientsOnly: boolean) => TF.Tensor2D;
  /** theta: the variables the outer problem trains */
  vars: TF.Variable[];
  x: TF.Tensor4D;
  y: TF.Tensor1D;
  range: InputRange;
  /** weight of ||delta||^2 in L_in */
  penalty: number;
  /** [batch, 1, 1, 1] of 0 / 1: which images get delta (absent: all; `outerPerturbedFraction`) */
  perturbedRows?: TF.Tensor4D;
}

export function perturbed(p: UnlearningBatch, delta: TF.Tensor): TF.Tensor4D {
  const { low, high } = inputBounds(p.range);
  const step = tf.mul(delta, DELTA_UNIT * (high - low));
  return tf.clipByValue(tf.add(p.x, p.perturbedRows ? tf.mul(p.perturbedRows, step) : step), low, high) as TF.Tensor4D;
}

/**
 * The authors' outer batches: floor(fraction * batch) images, drawn at random, get delta (they
 * write int(number * portion)); undefined (every image) for fraction 1.
 */
export function perturbedRowsMask(rng: Rng, batch: number, fraction: number): TF.Tensor4D | undefined {
  if (fraction >= 1) return undefined;
  const chosen = Math.floor(fraction * batch);
  const rows = new Float32Array(batch);
  const order = rng.permutation(batch);
  for (let k = 0; k < chosen; k++) rows[order[k]] = 1;
  return tf.tensor4d(rows, [batch, 1, 1, 1]);
}

/** L_in(delta, theta) = penalty * ||delta||^2 - CE(f(x + delta), y): minimised by the inner problem. */
export function innerLoss(p: UnlearningBatch, delta: TF.Tensor): TF.Scalar {
  return tf.tidy(() => innerLossOfLogits(p, delta, p.forward(perturbed(p, delta))));
}

function innerLossOfLogits(p: UnlearningBatch, delta: TF.Tensor, logits: TF.Tensor2D): TF.Scalar {
  return tf.sub(tf.mul(p.penalty, tf.sum(tf.square(delta))), crossEntropy(logits, p.y)) as TF.Scalar;
}

/** L_out(delta, theta) = CE(f(x + delta), y). */
export function outerLoss(p: UnlearningBatch, delta: TF.Tensor): TF.Scalar {
  return tf.tidy(() => crossEntropy(p.forward(perturbed(p, delta)), p.y));
}

export function innerGradDelta(p: UnlearningBatch, delta: TF.Tensor): TF.Tensor {
  const q = p.inputGradientForward ? { ...p, forward: p.inputGradientForward } : p;
  return tf.grad((d: TF.Tensor) => innerLoss(q, d))(delta);
}

/**
 * grad_delta L_in at two points from one forward and one backward of the batch stacked on
 * itself, x + a over x + b: each half's loss depends on its own point only, so the gradient of
 * their sum to a (to b) is a's (b's) own, with the same operations per image as two separate
 * passes (test/core/defenses/ibau.test.ts holds them bit-identical).
 */
export function innerGradDeltaPair(p: UnlearningBatch, a: TF.Tensor, b: TF.Tensor): [TF.Tensor, TF.Tensor] {
  const forward = p.inputGradientForward ?? p.forward;
  const n = p.x.shape[0];
  const [ga, gb] = tf.grads((da: TF.Tensor, db: TF.Tensor) => {
    const logits = forward(tf.concat([perturbed(p, da), perturbed(p, db)], 0) as TF.Tensor4D);
    const la = tf.slice(logits, [0, 0], [n, -1]) as TF.Tensor2D;
    const lb = tf.slice(logits, [n, 0], [n, -1]) as TF.Tensor2D;
    return tf.add(innerLossOfLogits(p, da, la), innerLossOfLogits(p, db, lb)) as TF.Scalar;
  })([a, b]);
  return [ga, gb];
}

export function innerGradTheta(p: UnlearningBatch, delta: TF.Tensor): TF.Tensor[] {
  const { value, grads } = tf.variableGrads(() => innerLoss(p, delta), p.vars);
  value.dispose();
  return p.vars.map((v) => grads[v.name]);
}

/**
 * Derivative of `grad` along `direction` at `point` by central differences with an L2 step
 * of `step` along the unit direction, scaled back by ||direction|| (a zero direction gives
 * zeros). Returns new tensors; disposes its intermediates.
 */
export function centralDifference(
  grad: (point: TF.Tensor) => TF.Tensor[],
  point: TF.Tensor,
  direction: TF.Tensor,
  step: number,
  /** both points' gradients at once (one doubled batch); default: `grad` at each in turn */
  gradPair: (plus: TF.Tensor, minus: TF.Tensor) => [TF.Tensor[], TF.Tensor[]] = (a, b) => [grad(a), grad(b)],
): TF.Tensor[] {
  return tf.tidy(() => {
    const norm = tf.norm(direction);
    const u = tf.div(direction, tf.maximum(norm, 1e-30));
    const [plus, minus] = gradPair(tf.add(point, tf.mul(u, step)), tf.sub(point, tf.mul(u, step)));
    const scale = tf.div(norm, 2 * step);
    return plus.map((g, i) => tf.mul(tf.sub(g, minus[i]), scale));
  });
}

/** The finite-difference step for a perturbation of `size` elements. */
export function finiteDifferenceStep(size: number): number {
  return FD_RMS_STEP * Math.sqrt(size);
}

/** H v, the Hessian of L_in in delta times v, by central differences of grad_delta L_in (`secondOrder: finiteDifference`). */
export function finiteDifferenceHvp(p: UnlearningBatch, delta: TF.Tensor, v: TF.Tensor, step = finiteDifferenceStep(delta.size)): TF.Tensor {
  const pair = p.inputGradientForward
    ? (a: TF.Tensor, b: TF.Tensor): [TF.Tensor[], TF.Tensor[]] => {
        const [ga, gb] = innerGradDeltaPair(p, a, b);
        return [[ga], [gb]];
      }
    : undefined;
  return centralDifference((d) => [innerGradDelta(p, d)], delta, v, step, pair)[0];
}

/** grad_theta <grad_delta L_in, v>, the mixed second derivative of L_in applied to v, by central differences of grad_theta L_in. */
export function finiteDifferenceMixedProduct(p: UnlearningBatch, delta: TF.Tensor, v: TF.Tensor, step = finiteDifferenceStep(delta.size)): TF.Tensor[] {
  return centralDifference((d) => innerGradTheta(p, d), delta, v, step);
}

/** How I-BAU's two second-order products are computed (the config's `secondOrder`). */
export type SecondOrder = 'frozenPattern' | 'finiteDifference';

/**
 * RMS per-pixel size, as a share of the input range, of the input step along which the
 * frozen-pattern products take J v. The frozen-pattern logits are affine in the input, so J v
 * is exact for any step; a large one keeps the difference of logits far above their rounding.
 */
export const FROZEN_PATTERN_RMS_STEP = 1;

/**
 * The derivative of perturbed(delta) along v: DELTA_UNIT * range * v on the perturbed rows, zero
 * where the clip holds the pixel (with its gradient's convention, tfjs's and PyTorch's clamp alike:
 * a pixel exactly on a bound still moves).
 */
export function inputDirection(p: UnlearningBatch, delta: TF.Tensor, v: TF.Tensor): TF.Tensor4D {
  return tf.tidy(() => {
    const { low, high } = inputBounds(p.range);
    const scale = DELTA_UNIT * (high - low);
    const rows = (t: TF.Tensor) => (p.perturbedRows ? tf.mul(p.perturbedRows, t) : t);
    // the same sum perturbed() clips, so the mask is the clip's own
    const unclipped = tf.add(p.x, rows(tf.mul(delta, scale)));
    const inside = tf.cast(tf.logicalAnd(tf.greaterEqual(unclipped, low), tf.lessEqual(unclipped, high)), 'float32');
    return tf.mul(inside, rows(tf.mul(v, scale))) as TF.Tensor4D;
  });
}

function patternForwardOf(p: UnlearningBatch): NonNullable<UnlearningBatch['patternForward']> {
  if (!p.patternForward) throw new Error("I-BAU's frozen-pattern products need the batch's patternForward (secondOrder: frozenPattern)");
  return p.patternForward;
}

/** The scalar step that makes `direction` move the input by `rmsStep` of the range, RMS per element (any step if the direction is 0). */
function inputStep(p: UnlearningBatch, direction: TF.Tensor, rmsStep: number): TF.Scalar {
  const { low, high } = inputBounds(p.range);
  const rms = tf.sqrt(tf.mean(tf.square(direction)));
  return tf.div(rmsStep * (high - low), tf.maximum(rms, 1e-30)) as TF.Scalar;
}

/**
 * H v with the activation pattern frozen at delta, as autograd's double backward computes it on a
 * piecewise-linear model: 2 penalty v - D^T (1/n) sum_i J_i^T S_i J_i D v, with J_i the logits'
 * Jacobian in the input, S_i = diag(p_i) - p_i p_i^T the softmax-CE Hessian and D the input's
 * derivative in delta (clip pattern frozen too). J D v comes from frozen-pattern logits at
 * x0 + s D v minus those at x0, over s (exact: affine); the gradient in v of
 * (1/2n) sum_i (J_i D v)^T S_i (J_i D v), S_i held, is then the curvature term, through one
 * input-gradient backward. One recording forward, one frozen forward and one input-only backward
 * of the batch (the finite difference: a doubled forward and backward).
 */
export function frozenPatternHvp(p: UnlearningBatch, delta: TF.Tensor, v: TF.Tensor, rmsStep = FROZEN_PATTERN_RMS_STEP): TF.Tensor {
  const forward = patternForwardOf(p);
  const pattern = new ActivationPattern();
  try {
    return tf.tidy(() => {
      const n = p.x.shape[0];
      const x0 = perturbed(p, delta);
      const z0 = forward(x0, pattern, true);
      const prob = tf.softmax(z0);
      const s = inputStep(p, inputDirection(p, delta, v), rmsStep);
      const curvature = tf.grad((w: TF.Tensor) => {
        const jv = tf.div(tf.sub(forward(tf.add(x0, tf.mul(s, inputDirection(p, delta, w))) as TF.Tensor4D, pattern, true), z0), s);
        // jv^T (diag(p) - p p^T) jv = sum_k p_k jv_k^2 - (p . jv)^2, per image
        const projected = tf.sum(tf.mul(prob, jv), 1);
        return tf.div(tf.sub(tf.sum(tf.mul(prob, tf.square(jv))), tf.sum(tf.square(projected))), 2 * n) as TF.Scalar;
      })(v);
      return tf.sub(tf.mul(2 * p.penalty, v), curvature);
    });
  } finally {
    pattern.dispose();
  }
}

/**
 * grad_theta <grad_delta L_in, v> with the activation pattern frozen at delta, as autograd computes
 * it: <grad_delta L_in, v> = 2 penalty <delta, v> - (1/n) sum_i (p_i - e_{y_i})^T J_i D v, and its
 * gradient in theta through p_i and J_i D v alike, the pattern (a step function of theta) held.
 * J_i D v is the difference of the frozen-pattern logits at x0 + s D v and x0, over s, so both
 * forwards and the one backward run under the same tape; the penalty's term has no theta in it.
 */
export function frozenPatternMixedProduct(p: UnlearningBatch, delta: TF.Tensor, v: TF.Tensor, rmsStep = FROZEN_PATTERN_RMS_STEP): TF.Tensor[] {
  const forward = patternForwardOf(p);
  const pattern = new ActivationPattern();
  try {
    return tf.tidy(() => {
      const n = p.x.shape[0];
      const x0 = perturbed(p, delta);
      const direction = inputDirection(p, delta, v);
      const s = inputStep(p, direction, rmsStep);
      const x1 = tf.add(x0, tf.mul(s, direction)) as TF.Tensor4D;
      const { value, grads } = tf.variableGrads(() => {
        const z0 = forward(x0, pattern, false);
        const jv = tf.div(tf.sub(forward(x1, pattern, false), z0), s);
        const residual = tf.sub(tf.softmax(z0), tf.oneHot(p.y, z0.shape[1]));
        return tf.neg(tf.div(tf.sum(tf.mul(residual, jv)), n)) as TF.Scalar;
      }, p.vars);
      value.dispose();
      return p.vars.map((w) => grads[w.name]);
    });
  } finally {
    pattern.dispose();
  }
}

export interface Hypergradient {
  /** L_out at delta */
  loss: TF.Scalar;
  /** dL_out/dtheta, one tensor per variable */
  grads: TF.Tensor[];
}

/**
 * The hypergradient of L_out in theta at the inner solution delta: the implicit one with
 * K fixed-point iterations (fixed-point map step eta), or only the direct term.
 */
export function hypergradient(
  p: UnlearningBatch,
  delta: TF.Tensor,
  o: { mode: 'implicit' | 'firstOrder'; fixedPointSteps: number; fixedPointStepSize: number; secondOrder: SecondOrder },
): Hypergradient {
  const point = tf.variable(delta, true);
  try {
    const direct = o.mode === 'implicit' ? [...p.vars, point] : p.vars;
    const { value, grads } = tf.variableGrads(() => outerLoss(p, point), direct);
    const gTheta = p.vars.map((v) => grads[v.name]);
    if (o.mode === 'firstOrder') return { loss: value, grads: gTheta };
    const gDelta = grads[point.name];
    const eta = o.fixedPointStepSize;
    // the fixed-point map is L_in's descent, which perturbs every image (only L_out may perturb a share)
    const inner: UnlearningBatch = { ...p, perturbedRows: undefined };
    const [hvp, mixedProduct] =
      o.secondOrder === 'frozenPattern' ? [frozenPatternHvp, frozenPatternMixedProduct] : [finiteDifferenceHvp, finiteDifferenceMixedProduct];
    let v = gDelta.clone();
    for (let k = 1; k < o.fixedPointSteps; k++) {
      const hv = hvp(inner, delta, v);
      const next = tf.tidy(() => tf.add(tf.sub(v, tf.mul(eta, hv)), gDelta));
      tf.dispose([v, hv]);
      v = next;
    }
    const mixed = mixedProduct(inner, delta, v);
    const total = tf.tidy(() => gTheta.map((g, i) => tf.sub(g, tf.mul(eta, mixed[i]))));
    tf.dispose([...gTheta, gDelta, v, ...mixed]);
    return { loss: value, grads: total };
  } finally {
    point.dispose();
  }
}

type UnlearnConfig = Omit<IbauDefenseConfig, 'name'>;

/**
 * The universal perturbation of one round: `innerSteps` gradient steps on L_in (each on
 * its own batch), from zero, then projected on the L2 ball of radius `perturbationRadius`.
 */
export function universalPerturbation(
  batches: Array<Omit<UnlearningBatch, 'forward' | 'vars' | 'inputGradientForward'>>,
  forward: UnlearningBatch['forward'],
  cfg: Pick<UnlearnConfig, 'innerLearningRate' | 'perturbationRadius'>,
  shape: number[],
  inputGradientForward?: UnlearningBatch['inputGradientForward'],
): TF.Tensor {
  let delta: TF.Tensor = tf.zeros(shape);
  for (const b of batches) {
    const next = tf.tidy(() => {
      const g = innerGradDelta({ ...b, forward, inputGradientForward, vars: [] }, delta);
      return tf.sub(delta, tf.mul(cfg.innerLearningRate, g));
    });
    delta.dispose();
    delta = next;
  }
  const projected = tf.tidy(() => tf.mul(delta, tf.minimum(1, tf.div(cfg.perturbationRadius, tf.maximum(tf.norm(delta), 1e-12)))));
  delta.dispose();
  return projected;
}

export interface UnlearnOptions {
  /**
   * Every pass on the model's ordinary forward, H v's two points one at a time, as before issue
   * 22; default: the gradients to delta and H v on the input-gradient forward, H v's points in one
   * doubled batch. The same numbers by other calls, kept for tests and bench/ibauStep.ts. Only the
   * inner steps and the finite-difference products differ by path: the frozen-pattern products
   * (secondOrder's default) make the same calls either way.
   */
  reference?: boolean;
}

export interface UnlearnResult {
  history: EpochRecord[];
  resumedFromEpoch: number;
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * The I-BAU rounds, one checkpoint per round (model weights, Adam state, RNG position).
 * No augmentation: the universal perturbation is aligned with the image grid, as a patch
 * trigger is, and random crops would move the images under it.
 */
export async function unlearn(
  c: Classifier,
  data: { cleanFit: ImageDataset; cleanHeldOut: ImageDataset },
  cfg: UnlearnConfig,
  seed: number,
  control: PhaseControl & { progress?: (detail: Record<string, unknown>) => void; signal?: AbortSignal } = {},
  options: UnlearnOptions = {},
): Promise<UnlearnResult> {
  const n = data.cleanFit.labels.length;
  if (n < 2) throw new Error(`I-BAU needs at least 2 clean samples, got ${n}`);
  const vars = trainableVariables(c.model);
  const adam = new Adam(vars);
  const forward = (x: TF.Tensor4D) => applyModel(c.model, x, false) as TF.Tensor2D;
  const inputGradientForward =
    options.reference ? undefined : (x: TF.Tensor4D) => applyModelForInputGradients(c.model, x) as TF.Tensor2D;
  const patternForward = (x: TF.Tensor4D, pattern: ActivationPattern, inputGradientsOnly: boolean) =>
    applyModelWithPattern(c.model, x, pattern, inputGradientsOnly) as TF.Tensor2D;
  // refused before any work, naming the layer, rather than at the first outer step
  if (cfg.hypergradient === 'implicit' && cfg.secondOrder === 'frozenPattern') {
    assertFrozenPatternModel(c.model, "I-BAU's secondOrder 'frozenPattern' (set secondOrder: finiteDifference for this model)");
  }
  // a fixed number of outer steps whatever |D_c| (budgets.ts); passBatches walks shuffled passes
  const stepsPerRound = cfg.stepsPerRound;
  const shape = [1, data.cleanFit.height, data.cleanFit.width, data.cleanFit.channels];
  const signal = control.hooks?.signal ?? control.signal;
  try {
    let rng = new Rng(deriveSeed(seed, 'ibau'));
    let history: EpochRecord[] = [];
    let startRound = 0;
    if (control.resume) {
      const r = control.resume;
      if (r.epoch > cfg.rounds) throw new Error(`I-BAU checkpoint is at round ${r.epoch}, the run has ${cfg.rounds}`);
      setModelWeights(c.model, r.arrays.model, 'I-BAU checkpoint model');
      adam.restore(r.arrays['optimizer:model']);
      rng = new Rng(r.rngState);
      history = ((r.extra.history as EpochRecord[]) ?? []).slice();
      startRound = r.epoch;
    }
    const load = (idx: Int32Array) => ({ ...batchTensors(data.cleanFit, idx, c.meta.inputRange, rng), range: c.meta.inputRange, penalty: cfg.perturbationPenalty });
    // the authors search the perturbation against the model's own predictions
    const withLabels = (b: ReturnType<typeof load>) => {
      if (cfg.perturbationLabels === 'true') return b;
      const y = tf.tidy(() => tf.argMax(forward(b.x), 1).toInt() as TF.Tensor1D);
      b.y.dispose();
      return { ...b, y };
    };

    for (let round = startRound; round < cfg.rounds; round++) {
      const t0 = Date.now();
      const inner = passBatches(rng, n, cfg.batchSize, cfg.innerSteps).map(load).map(withLabels);
      const delta = universalPerturbation(inner, forward, cfg, shape, inputGradientForward);
      const innerCe = tf.tidy(() => outerLoss({ ...inner[0], forward, vars }, delta));
      tf.dispose(inner.flatMap((b) => [b.x, b.y]));

      const outer = passBatches(rng, n, cfg.batchSize, stepsPerRound);
      let lossSum = 0;
      for (let s = 0; s < outer.length; s++) {
        if (signal?.aborted) {
          tf.dispose([delta, innerCe]);
          throw new TrainingCancelledError();
        }
        const b = { ...load(outer[s]), forward, inputGradientForward, patternForward, vars, perturbedRows: perturbedRowsMask(rng, outer[s].length, cfg.outerPerturbedFraction) };
        const hg = hypergradient(b, delta, {
          mode: cfg.hypergradient,
          fixedPointSteps: cfg.fixedPointSteps,
          fixedPointStepSize: cfg.fixedPointStepSize,
          secondOrder: cfg.secondOrder,
        });
        adam.step(hg.grads, cfg.learningRate);
        lossSum += (await hg.loss.data())[0];
        tf.dispose([hg.loss, ...hg.grads, b.x, b.y, ...(b.perturbedRows ? [b.perturbedRows] : [])]);
        await control.hooks?.onBatch?.(round, s, outer.length);
        await yieldToEventLoop();
      }
      const norm = tf.norm(delta);
      const [deltaNorm, perturbedCe] = [(await norm.data())[0], (await innerCe.data())[0]];
      tf.dispose([delta, innerCe, norm]);
      const record: EpochRecord = {
        epoch: round + 1,
        loss: lossSum / outer.length,
        learningRate: cfg.learningRate,
        seconds: (Date.now() - t0) / 1000,
        images: outer.length * Math.min(cfg.batchSize, n),
        diagnostics: {
          deltaNorm,
          perturbedCrossEntropy: perturbedCe,
          heldOutAccuracy: accuracy(await predictLabels(c, data.cleanHeldOut), data.cleanHeldOut.labels),
        },
      };
      history.push(record);
      const finished = round + 1;
      const snapshot = (): TrainingCheckpoint => ({
        epoch: finished,
        rngState: rng.state(),
        arrays: { model: modelWeights(c.model), 'optimizer:model': adam.state() },
        extra: { history: history.slice() },
      });
      await control.hooks?.onEpochEnd?.(record, snapshot);
      control.progress?.({ phase: 'unlearning', round: finished, rounds: cfg.rounds });
    }
    return { history, resumedFromEpoch: startRound };
  } finally {
    adam.dispose();
  }
}

export const ibau: DefensePlugin<IbauDefenseConfig> = {
  name: 'ibau',
  description: 'minimax unlearning of a universal adversarial perturbation with implicit hypergradients',
  configSchema: ibauDefenseSchema,
  defaultCleanBudget: { fraction: 0.05 },
  async run(model, ctx, cfg) {
    const control = await ctx.phase('unlearning', cfg.rounds);
    const result = await unlearn(model, ctx, cfg, ctx.seed, { ...control, progress: ctx.progress, signal: ctx.signal });
    const last = result.history[result.history.length - 1];
    return {
      model,
      history: { unlearning: result.history },
      selectionRule: `none: the model after the last of ${cfg.rounds} rounds (fixed in advance; held-out accuracy is reported, not used)`,
      details: {
        hypergradient: cfg.hypergradient,
        secondOrder: cfg.secondOrder,
        rounds: cfg.rounds,
        optimisationSteps: result.history.reduce((s, r) => s + Math.round(r.images / Math.min(cfg.batchSize, ctx.cleanFit.labels.length)), 0),
        stepBudget: describeStepBudget(stepBudget(cfg)),
        heldOutAccuracy: last?.diagnostics?.heldOutAccuracy ?? NaN,
        finalPerturbationNorm: last?.diagnostics?.deltaNorm ?? NaN,
      },
    };
  },
};
