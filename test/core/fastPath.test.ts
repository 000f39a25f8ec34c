/**
 * The fast training path (core/train/fast) against the plain tfjs composition it replaces:
 * fused BatchNormalization (forward, gradients, moving statistics) and ReLU per layer and per
 * architecture, the native SGD update, whole training runs, and tensor hygiene.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../../core/tf';
import { Rng } from '../../core/rng';
import { generateSyntheticSplits } from '../../core/data/synthetic';
import { architectureNames, buildModel, type ArchitectureName } from '../../core/models/architectures';
import { createClassifier } from '../../core/models/layersFormat';
import { predictLabels } from '../../core/models/classifier';
import { SgdMomentum, trainableVariables } from '../../core/train/sgd';
import { crossEntropy } from '../../core/train/losses';
import { trainClassifier } from '../../core/train/trainClassifier';
import { TrainRecipe } from '../../core/train/recipe';
import { fastApply, fastRelu, fastPathRequested, supportsFastApply, useFastPath } from '../../core/train/fast';

/** max |a - b| / max(1, max |b|): float32 rounding differences scale with the values' size */
function relErr(a: TF.Tensor, b: TF.Tensor): number {
  const x = a.dataSync();
  const y = b.dataSync();
  assert.equal(x.length, y.length);
  let diff = 0;
  let scale = 1;
  for (let i = 0; i < x.length; i++) {
    diff = Math.max(diff, Math.abs(x[i] - y[i]));
    scale = Math.max(scale, Math.abs(y[i]));
  }
  return diff / scale;
}

function randomTensor(shape: number[], rng: Rng, scale = 1, offset = 0): TF.Tensor {
  const size = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(size);
  for (let i = 0; i < size; i++) v[i] = offset + scale * rng.normal();
  return tf.tensor(v, shape);
}

/** Random weights everywhere (BN gamma/beta/moving stats included), so no term is trivially 0 or 1. */
function randomiseWeights(model: TF.LayersModel, seed: number): void {
  const rng = new Rng(seed);
  const values = model.weights.map((w) => {
    const role = w.originalName.split('/')[1];
    const shape = w.shape as number[];
    if (role === 'moving_variance' || role === 'gamma') {
      return tf.tidy(() => tf.add(0.5, tf.abs(randomTensor(shape, rng))));
    }
    return randomTensor(shape, rng, role === 'kernel' ? 0.3 : 0.5);
  });
  model.setWeights(values);
  tf.dispose(values);
}

function twin(arch: ArchitectureName, size: number, seed: number): [TF.LayersModel, TF.LayersModel] {
  const a = buildModel(arch, { height: size, width: size, channels: 3 }, 10, 1);
  const b = buildModel(arch, { height: size, width: size, channels: 3 }, 10, 1);
  randomiseWeights(a, seed);
  b.setWeights(a.getWeights());
  return [a, b];
}

function movingStats(model: TF.LayersModel): TF.Tensor[] {
  return model.weights.filter((w) => /moving_(mean|variance)$/.test(w.originalName)).map((w) => w.read());
}

interface Pass {
  logits: TF.Tensor;
  grads: TF.Tensor[];
  dx: TF.Tensor;
}

/** Logits and the gradients of a random linear functional of them w.r.t. every trainable weight and x. */
function pass(model: TF.LayersModel, x: TF.Tensor, dy: TF.Tensor, training: boolean, fast: boolean): Pass {
  const vars = trainableVariables(model);
  const forward = (input: TF.Tensor) =>
    (fast ? fastApply(model, input, training) : model.apply(input, { training })) as TF.Tensor;
  let logits: TF.Tensor | undefined;
  const { value, grads } = tf.variableGrads(() =>
    tf.tidy(() => {
      const z = forward(x);
      logits = tf.keep(z.clone());
      return tf.sum(tf.mul(z, dy)) as TF.Scalar;
    }),
    vars,
  );
  value.dispose();
  // x's gradient in inference mode: moving statistics do not change, so a second pass is harmless
  const dx = tf.grad((input: TF.Tensor) => tf.sum(tf.mul(forward(input), dy)))(x);
  return { logits: logits!, grads: vars.map((v) => grads[v.name]), dx };
}

// Measured on the 2-core AMD EPYC build machine (oneDNN on), worst over the three architectures
// and both modes: logits 1.3e-6, dL/dx 1.7e-6, weight gradients 4.9e-6 (resnet20's 19 stacked
// BNs accumulate rounding), moving statistics 1.5e-6. The bounds sit ~10x above that and below
// the smallest real mistake: taking the unbiased batch variance for the moving variance shifts
// it by 0.1 * var / (n - 1) per step, >= 1.3e-4 * var for the first BN here (n = 6*16*16).
const FORWARD_TOL = 1e-5;
const GRAD_TOL = 5e-5;
const STATS_TOL = 1e-5;

// Input size per architecture. These checks compare two float32 computations of a ReLU net, so
// a pre-activation within rounding of 0 can take the other side of the ReLU in one of them and
// change that unit's gradient outright. preactResnet18 at 16x16 has 2x2 maps in its last stage
// (BN over 24 values a channel) and did (dL/dx 3.8e-3 apart); at its CIFAR size, 32x32, the worst
// errors were logits 4.0e-6, dL/dx 2.8e-6, weight gradients 1.2e-5, moving statistics 2.9e-6.
const sizeFor: Record<ArchitectureName, number> = { tinyCnn: 16, smallCnn: 16, resnet20: 16, preactResnet18: 32 };

for (const arch of architectureNames) {
  test(`${arch}: fused BN + ReLU forward, gradients and moving statistics match tfjs-layers in both modes`, () => {
    const size = sizeFor[arch];
    const [plain, fast] = twin(arch, size, 3);
    assert.ok(supportsFastApply(fast));
    const rng = new Rng(11);
    const x = randomTensor([6, size, size, 3], rng, 0.5, 0.5);
    const dy = randomTensor([6, 10], rng);
    for (const training of [true, false]) {
      const before = tf.memory().numTensors;
      const p = pass(plain, x, dy, training, false);
      const f = pass(fast, x, dy, training, true);
      const what = `${arch} training=${training}`;
      if (process.env.FAST_PATH_TEST_VERBOSE) {
        const g = Math.max(...p.grads.map((t, i) => relErr(f.grads[i], t)));
        const st = Math.max(...movingStats(plain).map((t, i) => relErr(movingStats(fast)[i], t)));
        console.log(`${what}: logits ${relErr(f.logits, p.logits)}, dx ${relErr(f.dx, p.dx)}, weights ${g}, stats ${st}`);
      }
      assert.ok(relErr(f.logits, p.logits) < FORWARD_TOL, `${what}: logits differ by ${relErr(f.logits, p.logits)}`);
      assert.ok(relErr(f.dx, p.dx) < GRAD_TOL, `${what}: dL/dx differs by ${relErr(f.dx, p.dx)}`);
      const vars = trainableVariables(plain);
      p.grads.forEach((g, i) => {
        const e = relErr(f.grads[i], g);
        assert.ok(e < GRAD_TOL, `${what}: gradient of ${vars[i].name} differs by ${e}`);
      });
      // each pass ran two training-mode forwards (moving stats updated twice) or none
      const sp = movingStats(plain);
      const sf = movingStats(fast);
      sp.forEach((s, i) => assert.ok(relErr(sf[i], s) < STATS_TOL, `${what}: moving statistic ${i} differs by ${relErr(sf[i], s)}`));
      if (training) {
        // the statistics really moved (a fused path that skipped the update would pass the check above only if both skipped)
        const fresh = buildModel(arch, { height: size, width: size, channels: 3 }, 10, 1);
        randomiseWeights(fresh, 3);
        const initial = movingStats(fresh);
        assert.ok(relErr(sf[0], initial[0]) > 1e-3, 'moving mean did not change in training mode');
        fresh.dispose();
      }
      tf.dispose([p.logits, p.dx, ...p.grads, f.logits, f.dx, ...f.grads]);
      assert.equal(tf.memory().numTensors, before, `${what}: tensors leaked`);
    }
    tf.dispose([x, dy]);
    plain.dispose();
    fast.dispose();
  });
}

test('fused BN on one layer: batch statistics are the biased ones and momentum follows tfjs-layers (moving = 0.9 moving + 0.1 batch)', () => {
  const input = tf.input({ shape: [5, 5, 4] });
  const bn = tf.layers.batchNormalization({ momentum: 0.9, epsilon: 1e-5 });
  const model = tf.model({ inputs: input, outputs: bn.apply(input) as TF.SymbolicTensor });
  const rng = new Rng(5);
  const x = randomTensor([3, 5, 5, 4], rng, 2, 1);
  const y = tf.tidy(() => fastApply(model, x, true) as TF.Tensor);
  const { mean, variance } = tf.moments(x, [0, 1, 2]);
  // moving mean started at 0 and variance at 1
  const expectedMean = tf.mul(mean, 0.1);
  const expectedVar = tf.add(tf.mul(variance, 0.1), 0.9);
  const [, , movingMean, movingVar] = model.getWeights();
  assert.ok(relErr(movingMean, expectedMean) < STATS_TOL);
  assert.ok(relErr(movingVar, expectedVar) < STATS_TOL);
  // output: zero mean, unit (biased) variance per channel
  const m = tf.moments(y, [0, 1, 2]);
  assert.ok(Math.max(...Array.from(tf.abs(m.mean).dataSync())) < 1e-5);
  assert.ok(Math.max(...Array.from(tf.abs(tf.sub(m.variance, 1)).dataSync())) < 1e-3);
  tf.dispose([x, y, mean, variance, expectedMean, expectedVar, m.mean, m.variance]);
  model.dispose();
});

test('fastRelu: same values and gradient as tf.relu, including at exactly 0', () => {
  const x = tf.tensor1d([-2, -0.5, 0, 0, 1e-30, 0.5, 3]);
  const dy = tf.tensor1d([1, 2, 3, 4, 5, 6, 7]);
  const plainGrad = tf.grad((v: TF.Tensor) => tf.sum(tf.mul(tf.relu(v), dy)))(x);
  const fastGrad = tf.grad((v: TF.Tensor) => tf.sum(tf.mul(fastRelu(v), dy)))(x);
  assert.deepEqual(Array.from(fastGrad.dataSync()), Array.from(plainGrad.dataSync()));
  assert.deepEqual(Array.from(fastGrad.dataSync()), [0, 0, 0, 0, 5, 6, 7]);
  const y = fastRelu(x);
  assert.deepEqual(Array.from(y.dataSync()), Array.from(tf.relu(x).dataSync()));
  tf.dispose([x, dy, plainGrad, fastGrad, y]);
});

test('fastApply on a Sequential model and on a two-output model equals model.apply', () => {
  const seq = tf.sequential({
    layers: [
      tf.layers.conv2d({ inputShape: [6, 6, 2], filters: 3, kernelSize: 3, padding: 'same', useBias: false }),
      tf.layers.batchNormalization({ momentum: 0.9, epsilon: 1e-5 }),
      tf.layers.activation({ activation: 'relu' }),
      tf.layers.flatten(),
      tf.layers.dense({ units: 2 }),
    ],
  });
  const input = tf.input({ shape: [6, 6, 2] });
  const conv = tf.layers.conv2d({ filters: 3, kernelSize: 3, padding: 'same' }).apply(input) as TF.SymbolicTensor;
  const relu = tf.layers.reLU().apply(conv) as TF.SymbolicTensor;
  const head = tf.layers.dense({ units: 2 }).apply(tf.layers.flatten().apply(relu) as TF.SymbolicTensor) as TF.SymbolicTensor;
  const multi = tf.model({ inputs: input, outputs: [relu, head] });
  const x = randomTensor([4, 6, 6, 2], new Rng(9));
  for (const model of [seq, multi]) {
    assert.ok(supportsFastApply(model));
    const a = tf.tidy(() => [model.apply(x, { training: false }) as TF.Tensor | TF.Tensor[]].flat().map((t) => t.clone()));
    const b = tf.tidy(() => [fastApply(model, x, false)].flat().map((t) => t.clone()));
    assert.equal(a.length, b.length);
    a.forEach((t, i) => assert.ok(relErr(b[i], t) < FORWARD_TOL));
    tf.dispose([...a, ...b]);
  }
  x.dispose();
  seq.dispose();
  multi.dispose();
});

test('native SGD update: same weights and velocities as the plain tfjs update over 5 steps', () => {
  const [a, b] = twin('tinyCnn', 8, 4);
  const va = trainableVariables(a);
  const vb = trainableVariables(b);
  const plain = new SgdMomentum(va, { momentum: 0.9, weightDecay: 5e-4, fast: false });
  const fast = new SgdMomentum(vb, { momentum: 0.9, weightDecay: 5e-4, fast: true });
  const rng = new Rng(8);
  for (let s = 0; s < 5; s++) {
    const grads = va.map((v) => randomTensor(v.shape, rng, 0.1));
    plain.step(grads, 0.05 * (s + 1));
    fast.step(grads, 0.05 * (s + 1));
    tf.dispose(grads);
  }
  // AddN sums g + mu*v + wd*w in one rounding where the plain path rounds twice: <= 1 ulp per step
  va.forEach((w, i) => assert.ok(relErr(vb[i], w) < 1e-6, `${w.name} differs by ${relErr(vb[i], w)}`));
  const sa = plain.state();
  const sb = fast.state();
  sa.forEach((s, i) => {
    const e = relErr(tf.tensor(sb[i].values), tf.tensor(s.values));
    assert.ok(e < 1e-6, `velocity ${i} differs by ${e}`);
  });
  assert.ok(relErr(vb[0], tf.zerosLike(vb[0])) > 0.01, 'the update moved the weights');
  plain.dispose();
  fast.dispose();
  a.dispose();
  b.dispose();
});

test('NTML_FAST_PATH=0 turns the fast path off; explicit options override the environment', () => {
  const saved = process.env.NTML_FAST_PATH;
  try {
    delete process.env.NTML_FAST_PATH;
    assert.equal(fastPathRequested(), true);
    assert.equal(useFastPath(), true);
    for (const off of ['0', 'false', 'OFF']) {
      process.env.NTML_FAST_PATH = off;
      assert.equal(useFastPath(), false, off);
    }
    assert.equal(useFastPath(true), true);
    process.env.NTML_FAST_PATH = '1';
    assert.equal(useFastPath(false), false);
  } finally {
    if (saved === undefined) delete process.env.NTML_FAST_PATH;
    else process.env.NTML_FAST_PATH = saved;
  }
});

test('training through the fast path reaches the plain path accuracy on the same seed; tensor count stays flat', async () => {
  const { train, test: held } = generateSyntheticSplits({ trainSize: 320, testSize: 160, numClasses: 4, height: 16, width: 16, channels: 3, seed: 21 });
  const recipe = TrainRecipe.parse({ epochs: 4, batchSize: 32, learningRate: 0.05, augment: { padding: 2, flip: true } });
  const run = async (fastPath: boolean) => {
    const c = createClassifier('tinyCnn', train, 4, 7);
    const counts: number[] = [];
    const result = await trainClassifier({ classifier: c, data: train, recipe, seed: 13, fastPath, afterStep: () => counts.push(tf.memory().numTensors) });
    const predicted = await predictLabels(c, held);
    const accuracy = predicted.reduce((n, p, i) => n + (p === held.labels[i] ? 1 : 0), 0) / held.labels.length;
    const weights = c.model.getWeights().map((w) => w.clone());
    c.model.dispose();
    return { accuracy, losses: result.history.map((h) => h.loss), counts, weights };
  };
  const plain = await run(false);
  const fast = await run(true);
  const drift = Math.max(...fast.weights.map((w, i) => relErr(w, plain.weights[i])));
  if (process.env.FAST_PATH_TEST_VERBOSE) {
    console.log(`accuracy plain ${plain.accuracy} fast ${fast.accuracy}; losses plain ${plain.losses} fast ${fast.losses}; weight drift ${drift}`);
  }
  // measured: held-out accuracy 0.869 on both paths, per-epoch losses within 6e-5 of each other
  // (relative 1.5e-4), largest relative weight difference after 40 steps 1.8e-3: rounding noise
  // that SGD carries along. Bounds: 8 of 160 images, 1% of the loss, 2e-2 of the weights.
  assert.ok(plain.accuracy > 0.6, `plain path learned nothing (${plain.accuracy})`);
  assert.ok(Math.abs(fast.accuracy - plain.accuracy) <= 0.05, `accuracy plain ${plain.accuracy} vs fast ${fast.accuracy}`);
  fast.losses.forEach((l, i) => assert.ok(Math.abs(l - plain.losses[i]) < 0.01 * plain.losses[i], `epoch ${i + 1} loss plain ${plain.losses[i]} vs fast ${l}`));
  for (const r of [plain, fast]) {
    assert.equal(r.counts.length, 40);
    assert.ok(r.counts.every((n) => n === r.counts[0]), `live tensors per step: ${r.counts.join(',')}`);
  }
  // float-noise level agreement of the trained weights, not just of the accuracy
  assert.ok(drift < 0.02, `weights drifted by ${drift}`);
  tf.dispose([...plain.weights, ...fast.weights]);
});

test('the fast path is deterministic: two runs on the same seed give byte-identical weights', async () => {
  const { train } = generateSyntheticSplits({ trainSize: 96, testSize: 8, numClasses: 4, height: 8, width: 8, channels: 3, seed: 2 });
  const recipe = TrainRecipe.parse({ epochs: 2, batchSize: 16, learningRate: 0.05 });
  const run = async () => {
    const c = createClassifier('tinyCnn', train, 4, 3);
    await trainClassifier({ classifier: c, data: train, recipe, seed: 4, fastPath: true });
    const w = c.model.getWeights().map((t) => Array.from(t.dataSync()));
    c.model.dispose();
    return w;
  };
  assert.deepEqual(await run(), await run());
});
