import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../../../core/tf';
import { Rng } from '../../../core/rng';
import { Adam } from '../../../core/train/adam';
import { crossEntropy } from '../../../core/train/losses';
import { trainableVariables } from '../../../core/train/sgd';
import { modelWeights, encodeCheckpoint, decodeCheckpoint } from '../../../core/train/checkpoint';
import { defenseDisplayName, ibauDefenseSchema, type IbauDefenseConfig } from '../../../core/defenses/configs';
import {
  DELTA_UNIT,
  finiteDifferenceStep,
  frozenPatternHvp,
  frozenPatternMixedProduct,
  hypergradient,
  ibau,
  innerGradDelta,
  finiteDifferenceHvp,
  finiteDifferenceMixedProduct,
  perturbed,
  perturbedRowsMask,
  unlearn,
  type UnlearningBatch,
} from '../../../core/defenses/ibau';
import { createClassifier } from '../../../core/models/layersFormat';
import { ActivationPattern, applyModel, applyModelForInputGradients, applyModelWithPattern } from '../../../core/train/fast';
import { plainContext, type DefenseContext } from '../../../core/defenses/defense';
import { getDefense } from '../../../core/defenses/registry';
import { evaluateClassifier } from '../../../core/experiment/evaluate';
import { backdooredFixture } from '../../support/backdoored';

// --- a linear softmax model, where every derivative of I-BAU's losses is known in closed form ---

const H = 2;
const W = 2;
const C = 2;
const D = H * W * C;
const K = 3;
const N = 5;

interface LinearCase {
  model: TF.LayersModel;
  batch: UnlearningBatch;
  delta: TF.Tensor4D;
  v: TF.Tensor4D;
  /** float64 copies */
  kernel: number[][];
  bias: number[];
  xs: number[][];
  ys: number[];
  deltaValues: number[];
  vValues: number[];
}

function linearCase(seed: number, penalty: number): LinearCase {
  const rng = new Rng(seed);
  const input = tf.input({ shape: [H, W, C] });
  const flat = tf.layers.flatten().apply(input) as TF.SymbolicTensor;
  const logits = tf.layers.dense({ units: K }).apply(flat) as TF.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: logits });
  const kernel = Array.from({ length: D }, () => Array.from({ length: K }, () => 2 * rng.normal()));
  const bias = Array.from({ length: K }, () => rng.normal());
  const weights = [tf.tensor2d(kernel.flat(), [D, K]), tf.tensor1d(bias)];
  model.setWeights(weights);
  tf.dispose(weights);
  // pixels well inside [0, 1] and a small delta, so clipping never acts
  const xs = Array.from({ length: N }, () => Array.from({ length: D }, () => rng.uniform(0.3, 0.7)));
  const ys = Array.from({ length: N }, () => rng.int(K));
  const deltaValues = Array.from({ length: D }, () => rng.uniform(-0.4, 0.4));
  const vValues = Array.from({ length: D }, () => rng.normal());
  const batch: UnlearningBatch = {
    forward: (x) => model.apply(x, { training: false }) as TF.Tensor2D,
    patternForward: (x, pattern, inputGradientsOnly) => applyModelWithPattern(model, x, pattern, inputGradientsOnly) as TF.Tensor2D,
    vars: trainableVariables(model),
    x: tf.tensor4d(xs.flat(), [N, H, W, C]),
    y: tf.tensor1d(ys, 'int32'),
    range: '0-1',
    penalty,
  };
  return {
    model,
    batch,
    delta: tf.tensor4d(deltaValues, [1, H, W, C]),
    v: tf.tensor4d(vValues, [1, H, W, C]),
    kernel,
    bias,
    xs,
    ys,
    deltaValues,
    vValues,
  };
}

function disposeCase(c: LinearCase): void {
  tf.dispose([c.batch.x, c.batch.y, c.delta, c.v]);
  c.model.dispose();
}

/** Per sample: the perturbed input, softmax p, p - onehot, and S = diag(p) - p p^T. */
function analyticParts(c: LinearCase) {
  const s = DELTA_UNIT;
  return c.xs.map((x, i) => {
    const xp = x.map((xi, m) => xi + s * c.deltaValues[m]);
    const z = c.bias.map((b, j) => b + xp.reduce((acc, xm, m) => acc + xm * c.kernel[m][j], 0));
    const zmax = Math.max(...z);
    const e = z.map((zj) => Math.exp(zj - zmax));
    const total = e.reduce((a, b) => a + b, 0);
    const p = e.map((ej) => ej / total);
    const r = p.map((pj, j) => pj - (j === c.ys[i] ? 1 : 0));
    const S = p.map((pl, l) => p.map((pj, j) => (l === j ? pl : 0) - pl * pj));
    return { xp, p, r, S };
  });
}

/** H u for L_in = penalty ||delta||^2 - mean CE: H = 2 penalty I - (s^2/n) sum_i W S_i W^T. */
function analyticHvp(c: LinearCase, u: number[]): number[] {
  const s = DELTA_UNIT;
  const parts = analyticParts(c);
  const a = Array.from({ length: K }, (_, j) => u.reduce((acc, um, m) => acc + c.kernel[m][j] * um, 0));
  return u.map((um, m) => {
    let sum = 0;
    for (const { S } of parts) for (let l = 0; l < K; l++) for (let j = 0; j < K; j++) sum += c.kernel[m][l] * S[l][j] * a[j];
    return 2 * c.batch.penalty * um - ((s * s) / N) * sum;
  });
}

/** grad_theta <grad_delta L_in, u> for theta = (kernel, bias). */
function analyticMixed(c: LinearCase, u: number[]): { kernel: number[][]; bias: number[] } {
  const s = DELTA_UNIT;
  const parts = analyticParts(c);
  const a = Array.from({ length: K }, (_, j) => u.reduce((acc, um, m) => acc + c.kernel[m][j] * um, 0));
  const kernel = Array.from({ length: D }, () => new Array<number>(K).fill(0));
  const bias = new Array<number>(K).fill(0);
  for (const { xp, r, S } of parts) {
    const Sa = S.map((row) => row.reduce((acc, v, j) => acc + v * a[j], 0));
    for (let m = 0; m < D; m++) for (let j = 0; j < K; j++) kernel[m][j] -= (s / N) * (u[m] * r[j] + xp[m] * Sa[j]);
    for (let j = 0; j < K; j++) bias[j] -= (s / N) * Sa[j];
  }
  return { kernel, bias };
}

/** Gradients of L_out = mean CE in theta and in delta. */
function analyticOuter(c: LinearCase): { kernel: number[][]; bias: number[]; delta: number[] } {
  const s = DELTA_UNIT;
  const parts = analyticParts(c);
  const kernel = Array.from({ length: D }, () => new Array<number>(K).fill(0));
  const bias = new Array<number>(K).fill(0);
  const delta = new Array<number>(D).fill(0);
  for (const { xp, r } of parts) {
    for (let m = 0; m < D; m++) for (let j = 0; j < K; j++) kernel[m][j] += (xp[m] * r[j]) / N;
    for (let j = 0; j < K; j++) bias[j] += r[j] / N;
    for (let m = 0; m < D; m++) delta[m] += (s / N) * c.kernel[m].reduce((acc, w, j) => acc + w * r[j], 0);
  }
  return { kernel, bias, delta };
}

function relativeError(actual: ArrayLike<number>, expected: number[]): number {
  let num = 0;
  let den = 0;
  expected.forEach((e, i) => {
    num += (actual[i] - e) ** 2;
    den += e * e;
  });
  return Math.sqrt(num / den);
}

test('finite-difference Hessian-vector and mixed products match the linear softmax model in closed form', () => {
  const c = linearCase(1, 0.001);
  const before = tf.memory().numTensors;
  const hv = finiteDifferenceHvp(c.batch, c.delta, c.v);
  const mixed = finiteDifferenceMixedProduct(c.batch, c.delta, c.v);
  const hvErr = relativeError(hv.dataSync(), analyticHvp(c, c.vValues));
  const expected = analyticMixed(c, c.vValues);
  const kernelErr = relativeError(mixed[0].dataSync(), expected.kernel.flat());
  const biasErr = relativeError(mixed[1].dataSync(), expected.bias);
  tf.dispose([hv, ...mixed]);
  assert.equal(tf.memory().numTensors, before, 'the finite differences leak tensors');
  // measured relative errors: H v 2.8e-3, mixed kernel 2.7e-5, mixed bias 3.2e-3 (float32 gradients, step 1e-3
  // of the range per pixel); the bound leaves room for other CPUs' float rounding
  console.log(`FD relative errors: Hv ${hvErr.toExponential(2)}, mixed kernel ${kernelErr.toExponential(2)}, bias ${biasErr.toExponential(2)}`);
  assert.ok(hvErr < 2e-2, `H v relative error ${hvErr}`);
  assert.ok(kernelErr < 2e-2, `mixed kernel relative error ${kernelErr}`);
  assert.ok(biasErr < 2e-2, `mixed bias relative error ${biasErr}`);

  // a quadratic: with a zero kernel the CE is constant in delta and H = 2 * penalty * I
  const q = linearCase(2, 0.37);
  const zero = [tf.zeros([D, K]), tf.tensor1d(q.bias)];
  q.model.setWeights(zero);
  tf.dispose(zero);
  const qhv = finiteDifferenceHvp(q.batch, q.delta, q.v);
  const qErr = relativeError(qhv.dataSync(), q.vValues.map((u) => 2 * 0.37 * u));
  qhv.dispose();
  console.log(`quadratic H v relative error ${qErr.toExponential(2)}`);
  // measured 7.3e-7: the difference quotient of a linear gradient is exact up to rounding
  assert.ok(qErr < 1e-4, `quadratic H v relative error ${qErr}`);
  disposeCase(c);
  disposeCase(q);
});

test('frozen-pattern H v and mixed product match the linear softmax model in closed form, at any step', () => {
  const c = linearCase(1, 0.001);
  const before = tf.memory().numTensors;
  const expectedHv = analyticHvp(c, c.vValues);
  const expected = analyticMixed(c, c.vValues);
  // the model is affine, so J v is exact whatever the step (0.1 to 1e3 of the range, RMS per pixel; far smaller
  // steps lose digits to the rounding of the logits they difference: 5e-3 on the mixed bias at 1e-3)
  for (const rmsStep of [0.1, 1, 1e3]) {
    const hv = frozenPatternHvp(c.batch, c.delta, c.v, rmsStep);
    const mixed = frozenPatternMixedProduct(c.batch, c.delta, c.v, rmsStep);
    const hvErr = relativeError(hv.dataSync(), expectedHv);
    const kernelErr = relativeError(mixed[0].dataSync(), expected.kernel.flat());
    const biasErr = relativeError(mixed[1].dataSync(), expected.bias);
    tf.dispose([hv, ...mixed]);
    console.log(`frozen pattern, step ${rmsStep}: relative errors H v ${hvErr.toExponential(2)}, mixed kernel ${kernelErr.toExponential(2)}, bias ${biasErr.toExponential(2)}`);
    // measured 6e-6 to 1e-5 (H v), 7e-8 to 3e-7 (kernel), 7e-6 to 2e-5 (bias, whose entries sum to about 0): float32
    // rounding against float64 closed forms, 100x below the finite differences above
    const bound = 1e-4;
    assert.ok(hvErr < bound, `H v relative error ${hvErr} at step ${rmsStep}`);
    assert.ok(kernelErr < bound && biasErr < bound, `mixed product relative errors ${kernelErr} / ${biasErr} at step ${rmsStep}`);
  }
  assert.equal(tf.memory().numTensors, before, 'the frozen-pattern products leak tensors');
  disposeCase(c);
});

test('the implicit hypergradient is the K-step fixed-point solution; firstOrder is the direct term only', () => {
  const c = linearCase(3, 0.001);
  const eta = 2;
  const steps = 4;
  const outer = analyticOuter(c);
  // v_1 = g_delta; v_{k+1} = v_k - eta H v_k + g_delta
  let v = outer.delta.slice();
  for (let k = 1; k < steps; k++) {
    const hv = analyticHvp(c, v);
    v = v.map((vi, m) => vi - eta * hv[m] + outer.delta[m]);
  }
  const mixed = analyticMixed(c, v);
  const expectedKernel = outer.kernel.flat().map((g, i) => g - eta * mixed.kernel.flat()[i]);
  const expectedBias = outer.bias.map((g, j) => g - eta * mixed.bias[j]);
  const implicitShare = relativeError(outer.kernel.flat(), expectedKernel);
  assert.ok(implicitShare > 0.05, 'the implicit term should matter in this case');
  // measured: finite differences kernel 2.3e-5, bias 1.5e-5; frozen pattern (exact on this affine model) 5.0e-7 and 6.5e-7
  const bounds = { finiteDifference: 2e-2, frozenPattern: 1e-4 } as const;
  for (const secondOrder of ['finiteDifference', 'frozenPattern'] as const) {
    const implicit = hypergradient(c.batch, c.delta, { mode: 'implicit', fixedPointSteps: steps, fixedPointStepSize: eta, secondOrder });
    const direct = hypergradient(c.batch, c.delta, { mode: 'firstOrder', fixedPointSteps: steps, fixedPointStepSize: eta, secondOrder });
    const kernelErr = relativeError(implicit.grads[0].dataSync(), expectedKernel);
    const biasErr = relativeError(implicit.grads[1].dataSync(), expectedBias);
    const directErr = relativeError(direct.grads[0].dataSync(), outer.kernel.flat());
    console.log(`${secondOrder} hypergradient relative errors: kernel ${kernelErr.toExponential(2)}, bias ${biasErr.toExponential(2)}; implicit term ${implicitShare.toFixed(3)} of the total`);
    assert.ok(kernelErr < bounds[secondOrder] && biasErr < bounds[secondOrder], `${secondOrder}: implicit hypergradient off by ${kernelErr} / ${biasErr}`);
    assert.ok(directErr < 1e-5, `first-order gradient off by ${directErr}`);
    tf.dispose([implicit.loss, direct.loss, ...implicit.grads, ...direct.grads]);
  }
  disposeCase(c);
});

test('outerPerturbedFraction: floor(fraction * batch) random images get delta, as the authors\' int(number * portion)', () => {
  const rng = new Rng(4);
  assert.equal(perturbedRowsMask(rng, 128, 1), undefined, 'fraction 1: every image');
  const rows = (batch: number, f: number) => Array.from(perturbedRowsMask(rng, batch, f)!.dataSync());
  assert.equal(rows(128, 0.01).reduce((a, b) => a + b, 0), 1, 'one image of 128');
  assert.equal(rows(80, 0.01).reduce((a, b) => a + b, 0), 0, 'none of an 80-image batch (|D_c| = 100)');
  assert.equal(rows(80, 0.5).reduce((a, b) => a + b, 0), 40);
  // only the chosen rows move
  const c = linearCase(5, 0.001);
  const mask = perturbedRowsMask(new Rng(1), N, 0.5)!;
  const moved = tf.tidy(() => tf.sum(tf.abs(tf.sub(perturbed({ ...c.batch, perturbedRows: mask }, c.delta), c.batch.x)), [1, 2, 3]).dataSync());
  const m = mask.dataSync();
  moved.forEach((d, i) => assert.equal(d > 0, m[i] === 1, `row ${i}`));
  // with no image perturbed, L_out does not depend on delta: the implicit hypergradient is the clean CE gradient
  const none = tf.zeros([N, 1, 1, 1]) as TF.Tensor4D;
  const implicit = hypergradient({ ...c.batch, perturbedRows: none }, c.delta, { mode: 'implicit', fixedPointSteps: 4, fixedPointStepSize: 2, secondOrder: 'frozenPattern' });
  const clean = tf.variableGrads(() => crossEntropy(c.batch.forward(c.batch.x), c.batch.y), c.batch.vars);
  const err = relativeError(implicit.grads[0].dataSync(), Array.from(clean.grads[c.batch.vars[0].name].dataSync()));
  assert.ok(err < 1e-4, `hypergradient with no perturbed image differs from the clean gradient by ${err}`);
  tf.dispose([mask, none, implicit.loss, ...implicit.grads, clean.value, ...Object.values(clean.grads)]);
  disposeCase(c);
});

test('I-BAU as the authors ran it (predicted labels, 1% of each outer batch perturbed) is deterministic and differs from the paper\'s', async () => {
  const fx = await backdooredFixture();
  const authors = ibauDefenseSchema.parse({ name: 'ibau', ...cheap, batchSize: 32, perturbationLabels: 'predicted', outerPerturbedFraction: 0.5 });
  const paper = ibauDefenseSchema.parse({ name: 'ibau', ...cheap, batchSize: 32 });
  assert.equal(paper.perturbationLabels, 'true');
  assert.equal(paper.outerPerturbedFraction, 1);
  const start = await fx.model();
  const ctx = await fixtureContext();
  const before = tf.memory().numTensors;
  const a = await ibau.run(start, ctx, authors);
  assert.equal(tf.memory().numTensors, before, 'the authors\' variant leaks tensors');
  const again = await ibau.run(await fx.model(), await fixtureContext(), authors);
  const p = await ibau.run(await fx.model(), await fixtureContext(), paper);
  assert.ok(sameWeights(a.model.model, again.model.model), 'two runs of the authors\' variant differ');
  assert.ok(!sameWeights(a.model.model, p.model.model), 'the authors\' variant equals the paper\'s');
  for (const o of [a, again, p]) o.model.model.dispose();
});

test('x + delta is clipped to the input range of every encoding', () => {
  for (const [range, low, high] of [['0-1', 0, 1], ['0-255', 0, 255], ['-1-1', -1, 1]] as const) {
    const x = tf.tensor4d([low, high, (low + high) / 2, high], [1, 2, 2, 1]);
    const delta = tf.tensor4d([-10, 10, 1, -1], [1, 2, 2, 1]);
    const y = perturbed({ forward: (t) => t as unknown as TF.Tensor2D, vars: [], x, y: tf.tensor1d([0], 'int32'), range, penalty: 0 }, delta);
    const values = Array.from(y.dataSync());
    assert.deepEqual(values.slice(0, 2), [low, high], range);
    // delta is in units of a quarter of the range
    assert.ok(Math.abs(values[2] - ((low + high) / 2 + DELTA_UNIT * (high - low))) < 1e-5 * (high - low), `${range}: ${values[2]}`);
    assert.ok(Math.abs(values[3] - (high - DELTA_UNIT * (high - low))) < 1e-5 * (high - low), `${range}: ${values[3]}`);
    tf.dispose([x, delta, y]);
  }
});

test('Adam: the first step moves every weight by lr * sign(g); state and restore continue exactly', () => {
  const make = (): TF.Variable[] => [tf.variable(tf.tensor1d([1, -2, 3])), tf.variable(tf.tensor2d([[0.5, -0.5]]))];
  const grads = (k: number) => [tf.tensor1d([0.1 * k, -3, 1e-3]), tf.tensor2d([[k, -k]])];
  const a = make();
  const adam = new Adam(a);
  const g1 = grads(1);
  adam.step(g1, 0.01);
  assert.ok(Math.max(...Array.from(a[0].dataSync()).map((v, i) => Math.abs(v - [1 - 0.01, -2 + 0.01, 3 - 0.01][i]))) < 1e-6);
  const saved = adam.state();
  const afterFirst = a.map((v) => v.dataSync().slice());
  assert.equal(saved[0].values[0], 1);
  for (let k = 2; k <= 3; k++) tf.tidy(() => adam.step(grads(k), 0.01));

  const b = make();
  b.forEach((v, i) => v.assign(tf.tensor(afterFirst[i], v.shape)));
  const other = new Adam(b);
  other.restore(saved);
  assert.equal(other.stepCount, 1);
  for (let k = 2; k <= 3; k++) tf.tidy(() => other.step(grads(k), 0.01));
  a.forEach((v, i) => assert.deepEqual(Array.from(b[i].dataSync()), Array.from(v.dataSync()), 'restored Adam diverged'));
  assert.throws(() => other.restore(saved.slice(1)), /Adam state has 4 arrays/);
  tf.dispose([...a, ...b, ...g1]);
  adam.dispose();
  other.dispose();
});

async function fixtureContext(extra: Partial<DefenseContext> = {}): Promise<DefenseContext> {
  const fx = await backdooredFixture();
  return plainContext({ cleanFit: fx.data.cleanFit, cleanHeldOut: fx.data.cleanHeldOut, augment: { padding: 4, flip: false }, seed: 5, ...extra });
}

function sameWeights(a: TF.LayersModel, b: TF.LayersModel): boolean {
  const wa = modelWeights(a);
  const wb = modelWeights(b);
  return wa.every((w, i) => w.values.every((v, j) => Object.is(v, wb[i].values[j])));
}

// a few seconds per run: 3 rounds of 2 inner steps and one outer step on batches of 16
const cheap: Partial<IbauDefenseConfig> = { rounds: 3, stepsPerRound: 1, innerSteps: 2, batchSize: 16, fixedPointSteps: 3, learningRate: 1e-3 };

test('I-BAU is deterministic, resumes exactly from a round checkpoint, and its implicit and first-order variants differ', async () => {
  const fx = await backdooredFixture();
  const cfg = ibauDefenseSchema.parse({ name: 'ibau', ...cheap });
  const checkpoints: Uint8Array[] = [];
  const recording = await fixtureContext({
    phase: async (name, epochs) => {
      assert.equal(name, 'unlearning');
      assert.equal(epochs, 3);
      return { hooks: { onEpochEnd: (_record, snapshot) => void checkpoints.push(encodeCheckpoint(snapshot())) } };
    },
  });
  const start = await fx.model();
  const before = tf.memory().numTensors;
  const first = await ibau.run(start, recording, cfg);
  const model = first.model.model;
  assert.equal(tf.memory().numTensors, before, 'I-BAU leaks tensors');
  assert.equal(checkpoints.length, 3);
  assert.equal(first.history.unlearning.length, 3);
  assert.match(first.selectionRule, /last of 3 rounds/);

  const second = await ibau.run(await fx.model(), await fixtureContext(), cfg);
  assert.ok(sameWeights(model, second.model.model), 'two runs with the same seed differ');

  const resumed = await ibau.run(await fx.model(), await fixtureContext({ phase: async () => ({ resume: decodeCheckpoint(checkpoints[1]) }) }), cfg);
  assert.ok(sameWeights(model, resumed.model.model), 'the run resumed after round 2 differs from the uninterrupted one');
  assert.deepEqual(resumed.history.unlearning.map((r) => r.loss), first.history.unlearning.map((r) => r.loss));

  const firstOrderCfg = ibauDefenseSchema.parse({ name: 'ibau', ...cheap, hypergradient: 'firstOrder' });
  const firstOrder = await ibau.run(await fx.model(), await fixtureContext(), firstOrderCfg);
  assert.ok(!sameWeights(model, firstOrder.model.model), 'the implicit term changed nothing');
  assert.equal(defenseDisplayName(firstOrderCfg), 'I-BAU (first-order)');
  assert.equal(defenseDisplayName(cfg), 'I-BAU');
  for (const o of [first, second, resumed, firstOrder]) o.model.model.dispose();
});

test('I-BAU at a reduced CI budget lowers the ASR of the BadNets model and keeps accuracy', async () => {
  const fx = await backdooredFixture();
  assert.ok(fx.before.asr! > 90, `fixture must be backdoored (ASR ${fx.before.asr})`);
  // At the old defaults I-BAU did not help with 80 clean samples: one pass per round was one Adam
  // step of lr 1e-4, 5 in all (now 10 a round whatever |D_c|, budgets.ts), and 5 inner steps barely move delta on this confident model (||delta||
  // 0.3 of a radius of 10): measured ASR 100 -> 100. The mechanics are tested with 3 rounds of 10
  // Adam steps at lr 5e-4, 20 inner steps, batches of 32. Measured 2026-11-26: ACC 100 -> 99.7, ASR
  // 100 -> 49.2. At lr 2e-3 an earlier build VM measured 99.9 / 51.2, but a later one's native
  // TensorFlow gave 85.8 / 15.4 (1e-3: 56.3 / 28.1): at this budget the outer steps are on the
  // edge of stability, and lr 5e-4 stays inside it. The fixture trained without the clean
  // reserve (issue 19) is less stable still: 3 rounds at 5e-4 gave ACC 82.3 / ASR 53.0, 3.5e-4
  // 95.2 / 77.4, 2.5e-4 98.7 / 90.9; 4 rounds at 3e-4 gave 98.3 / 86.2, and are the setting here. With the
  // frozen-pattern second-order products (the default since issue 19's re-check) the same run gave 98.6 / 85.4.
  const model = await fx.model();
  const cfg = ibauDefenseSchema.parse({ name: 'ibau', rounds: 4, learningRate: 3e-4, stepsPerRound: 10, innerSteps: 20, batchSize: 32 });
  const out = await ibau.run(model, await fixtureContext({ seed: 1 }), cfg);
  const after = await evaluateClassifier(out.model, fx.data.test, fx.data.backdoorTest);
  console.log(`ibau: ACC ${fx.before.acc.toFixed(1)} -> ${after.acc.toFixed(1)}, ASR ${fx.before.asr!.toFixed(1)} -> ${after.asr!.toFixed(1)}, ${JSON.stringify(out.details)}`);
  assert.ok(after.asr! < fx.before.asr! - 10, `ASR ${after.asr} should drop by >= 10 points from ${fx.before.asr}`);
  assert.ok(after.acc > fx.before.acc - 5, `ACC ${after.acc} should stay within 5 points of ${fx.before.acc}`);
  model.model.dispose();
});

test('I-BAU is registered', () => {
  assert.equal(getDefense('ibau'), ibau);
});

// --- the input-gradient path (issue 22): the same numbers as the reference path, fewer kernels ---

/** smallCnn with seeded random weights, a random batch of 16 in [0, 1], a small delta and a direction. */
function smallCnnCase(seed: number) {
  const c = createClassifier('smallCnn', { height: 32, width: 32, channels: 3 }, 10, seed);
  const rng = new Rng(seed);
  const n = 16;
  const values = (count: number, f: () => number) => Float32Array.from({ length: count }, f);
  const reference: UnlearningBatch = {
    forward: (x) => applyModel(c.model, x, false) as TF.Tensor2D,
    vars: trainableVariables(c.model),
    x: tf.tensor4d(values(n * 32 * 32 * 3, () => rng.next()), [n, 32, 32, 3]),
    y: tf.tensor1d(Int32Array.from({ length: n }, () => rng.int(10)), 'int32'),
    range: '0-1',
    penalty: 0.001,
  };
  const fast: UnlearningBatch = {
    ...reference,
    inputGradientForward: (x) => applyModelForInputGradients(c.model, x) as TF.Tensor2D,
    patternForward: (x, pattern, inputGradientsOnly) => applyModelWithPattern(c.model, x, pattern, inputGradientsOnly) as TF.Tensor2D,
  };
  const delta = tf.tensor4d(values(32 * 32 * 3, () => rng.uniform(-0.2, 0.2)), [1, 32, 32, 3]);
  const v = tf.tensor4d(values(32 * 32 * 3, () => rng.normal()), [1, 32, 32, 3]);
  const dispose = () => {
    tf.dispose([reference.x, reference.y, delta, v]);
    c.model.dispose();
  };
  return { c, reference, fast, delta, v, dispose };
}

/** Elements of `a` that are not bit-identical to `b`'s (Object.is: -0 and NaN count), and the largest |a - b|. */
function mismatches(a: TF.Tensor, b: TF.Tensor): { count: number; maxAbs: number } {
  const [x, y] = [a.dataSync(), b.dataSync()];
  assert.equal(x.length, y.length, 'sizes differ');
  let count = 0;
  let maxAbs = 0;
  x.forEach((xi, i) => {
    if (!Object.is(xi, y[i])) count++;
    maxAbs = Math.max(maxAbs, Math.abs(xi - y[i]));
  });
  return { count, maxAbs };
}

test('input-gradient path: grad_delta L_in and H v (both points in one doubled batch) bit-identical to the reference path on smallCnn, without filter gradients', async () => {
  const k = smallCnnCase(11);
  try {
    const before = tf.memory().numTensors;
    const pairs: Array<[string, TF.Tensor, TF.Tensor]> = [
      ['grad_delta L_in', innerGradDelta(k.reference, k.delta), innerGradDelta(k.fast, k.delta)],
      ['H v', finiteDifferenceHvp(k.reference, k.delta, k.v), finiteDifferenceHvp(k.fast, k.delta, k.v)],
    ];
    for (const [what, ref, fast] of pairs) {
      const m = mismatches(fast, ref);
      console.log(`${what}: ${m.count} of ${ref.size} elements differ (max |diff| ${m.maxAbs.toExponential(1)}, largest ${tf.tidy(() => tf.max(tf.abs(ref)).dataSync()[0]).toExponential(1)})`);
      assert.equal(m.count, 0, `${what}: ${m.count} elements differ from the reference path, by up to ${m.maxAbs}`);
    }
    tf.dispose(pairs.flatMap(([, a, b]) => [a, b]));
    assert.equal(tf.memory().numTensors, before, 'the input-gradient path leaks tensors');

    // the whole hypergradient (direct term and mixed product on the ordinary forward, H v on the new one)
    const o = { mode: 'implicit' as const, fixedPointSteps: 3, fixedPointStepSize: 0.1, secondOrder: 'finiteDifference' as const };
    const ref = hypergradient(k.reference, k.delta, o);
    const fast = hypergradient(k.fast, k.delta, o);
    ref.grads.forEach((g, i) => assert.equal(mismatches(fast.grads[i], g).count, 0, `hypergradient of ${k.reference.vars[i].name} differs`));
    assert.equal(fast.loss.dataSync()[0], ref.loss.dataSync()[0]);
    tf.dispose([ref.loss, fast.loss, ...ref.grads, ...fast.grads]);

    const kernels = async (p: UnlearningBatch) => (await tf.profile(() => tf.tidy(() => finiteDifferenceHvp(p, k.delta, k.v)))).kernels.map((e) => e.name);
    const [refKernels, fastKernels] = [await kernels(k.reference), await kernels(k.fast)];
    assert.ok(refKernels.includes('Conv2DBackpropFilter'), 'the reference H v computes filter gradients');
    assert.ok(!fastKernels.includes('Conv2DBackpropFilter'), 'the input-gradient H v does not');
    // smallCnn has 6 convolutions: 12 forwards of them for the two points one at a time, 6 for the doubled batch
    const convs = (names: string[]) => names.filter((n) => n === 'Conv2D' || n === 'FusedConv2D').length;
    assert.equal(convs(refKernels), 12);
    assert.equal(convs(fastKernels), 6, 'H v: one forward of the doubled batch instead of two');
    // the frozen-pattern H v: a recording forward and a frozen forward of the batch, an input-only backward
    const frozenKernels = (await tf.profile(() => tf.tidy(() => frozenPatternHvp(k.fast, k.delta, k.v)))).kernels.map((e) => e.name);
    assert.ok(!frozenKernels.includes('Conv2DBackpropFilter'), 'the frozen-pattern H v computes no filter gradients');
    assert.equal(convs(frozenKernels), 12, 'frozen-pattern H v: two forwards of the batch');
    assert.equal(frozenKernels.filter((n) => n === 'Conv2DBackpropInput').length, 6, 'one input backward of the batch through each convolution');
  } finally {
    k.dispose();
  }
});

/**
 * conv-BN-tanh twice, flatten, dense: a smooth function of the input (no ReLU or
 * max-pool kinks) that fastApply's walk runs with unfused convolutions and fused BN.
 */
function smoothCnn(seed: number): TF.LayersModel {
  const input = tf.input({ shape: [16, 16, 3] });
  let x = input as TF.SymbolicTensor;
  for (const filters of [8, 16]) {
    x = tf.layers.conv2d({ filters, kernelSize: 3, padding: 'same', kernelInitializer: tf.initializers.glorotNormal({ seed: seed + filters }) }).apply(x) as TF.SymbolicTensor;
    x = tf.layers.batchNormalization().apply(x) as TF.SymbolicTensor;
    x = tf.layers.activation({ activation: 'tanh' }).apply(x) as TF.SymbolicTensor;
  }
  x = tf.layers.flatten().apply(x) as TF.SymbolicTensor;
  const logits = tf.layers.dense({ units: 10, kernelInitializer: tf.initializers.glorotNormal({ seed }) }).apply(x) as TF.SymbolicTensor;
  return tf.model({ inputs: input, outputs: logits });
}

test('H v on the input-gradient path is stable across the finite-difference step (t/4, t, 4t) on a smooth CNN', () => {
  const model = smoothCnn(12);
  const rng = new Rng(12);
  const n = 16;
  const size = 16 * 16 * 3;
  const values = (count: number, f: () => number) => Float32Array.from({ length: count }, f);
  const p: UnlearningBatch = {
    forward: (x) => applyModel(model, x, false) as TF.Tensor2D,
    inputGradientForward: (x) => applyModelForInputGradients(model, x) as TF.Tensor2D,
    vars: trainableVariables(model),
    // pixels and delta inside the range, so clipping (a kink) never acts at these steps
    x: tf.tensor4d(values(n * size, () => rng.uniform(0.2, 0.8)), [n, 16, 16, 3]),
    y: tf.tensor1d(Int32Array.from({ length: n }, () => rng.int(10)), 'int32'),
    range: '0-1',
    // no ||delta||^2 term: its exact 2 * penalty * v would make agreement easy; H v is the CE's curvature alone
    penalty: 0,
  };
  const delta = tf.tensor4d(values(size, () => rng.uniform(-0.1, 0.1)), [1, 16, 16, 3]);
  const v = tf.tensor4d(values(size, () => rng.normal()), [1, 16, 16, 3]);
  try {
    const t = finiteDifferenceStep(size);
    const [quarter, base, four] = [t / 4, t, 4 * t].map((step) => finiteDifferenceHvp(p, delta, v, step));
    const rel = (a: TF.Tensor, b: TF.Tensor) => tf.tidy(() => tf.norm(tf.sub(a, b)).dataSync()[0] / tf.norm(b).dataSync()[0]);
    const [low, high] = [rel(quarter, base), rel(four, base)];
    // measured 1.2e-3 at t/4 (float32 rounding, growing as t shrinks) and 3.3e-4 at 4t; the bound is the closed-form
    // test's order. A ReLU / max-pool model moves by about its own size instead (docs/performance.md: the kinks)
    const norm = tf.tidy(() => tf.norm(base).dataSync()[0]);
    console.log(`smooth CNN, H v at t = ${t.toExponential(2)}: relative change ${low.toExponential(2)} at t/4, ${high.toExponential(2)} at 4t; ||H v|| ${norm.toExponential(2)}, ||v|| ${Math.sqrt(size).toFixed(0)}`);
    assert.ok(low < 1e-2, `H v moves by ${low} of its norm from t to t/4`);
    assert.ok(high < 1e-2, `H v moves by ${high} of its norm from t to 4t`);
    tf.dispose([quarter, base, four]);
  } finally {
    tf.dispose([p.x, p.y, delta, v]);
    model.dispose();
  }
});

test('secondOrder frozenPattern refuses a model that is not piecewise linear, naming the layer, before any work; finiteDifference runs it', async () => {
  const model = smoothCnn(13);
  const rng = new Rng(13);
  const n = 8;
  const data = {
    name: 'random-8',
    height: 16,
    width: 16,
    channels: 3,
    numClasses: 10,
    images: Uint8Array.from({ length: n * 16 * 16 * 3 }, () => rng.int(256)),
    labels: Int32Array.from({ length: n }, (_, i) => i % 10),
  };
  const c = { model, meta: { arch: 'smoothCnn', inputShape: [16, 16, 3] as [number, number, number], numClasses: 10, inputRange: '0-1' as const, exportedOutputActivation: 'linear' as const } };
  const cfg = { ...ibauDefenseSchema.parse({ name: 'ibau', ...cheap, rounds: 1, batchSize: 8 }) };
  assert.equal(cfg.secondOrder, 'frozenPattern', 'the default');
  const before = modelWeights(model);
  await assert.rejects(
    unlearn(c, { cleanFit: data, cleanHeldOut: data }, cfg, 1),
    /I-BAU's secondOrder 'frozenPattern' \(set secondOrder: finiteDifference for this model\): layer \S+ \(Activation\) of model \S+ is activation tanh \(not piecewise linear\)/,
  );
  assert.deepEqual(modelWeights(model), before, 'the refused run changed the weights');
  const fd = await unlearn(c, { cleanFit: data, cleanHeldOut: data }, { ...cfg, secondOrder: 'finiteDifference' }, 1);
  assert.equal(fd.history.length, 1);
  model.dispose();
});

test('I-BAU on the input-gradient path trains exactly the reference path\'s weights (tinyCnn fixture, implicit, 2 rounds)', async () => {
  const fx = await backdooredFixture();
  // the finite-difference products: the ones whose H v the reference path computes otherwise (the frozen-pattern
  // products run the same calls on both paths)
  const cfg = ibauDefenseSchema.parse({ name: 'ibau', ...cheap, rounds: 2, secondOrder: 'finiteDifference' });
  const data = { cleanFit: fx.data.cleanFit, cleanHeldOut: fx.data.cleanHeldOut };
  const [fast, reference] = [await fx.model(), await fx.model()];
  const a = await unlearn(fast, data, cfg, 5);
  const b = await unlearn(reference, data, cfg, 5, {}, { reference: true });
  assert.deepEqual(a.history.map((r) => r.loss), b.history.map((r) => r.loss));
  assert.ok(sameWeights(fast.model, reference.model), 'the input-gradient path trained other weights than the reference path');
  fast.model.dispose();
  reference.model.dispose();
});
