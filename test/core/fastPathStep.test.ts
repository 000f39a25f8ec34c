/**
 * The per-step savings of the fast path (core/train/fast: residual adds as one add, the BN
 * moving-statistics updates of all layers in one set of native calls, no empty statistics
 * tensors per BN, the SGD update of same-shape variables stacked) change no number: training steps through fastApply give the same weights,
 * bit for bit, as the walk before them (fastApply's `reference` option), with fewer native calls
 * and no tensor left behind per step. Real native TensorFlow.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../../core/tf';
import { Rng } from '../../core/rng';
import { buildModel, type ArchitectureName } from '../../core/models/architectures';
import { SgdMomentum, trainableVariables } from '../../core/train/sgd';
import { crossEntropy } from '../../core/train/losses';
import { fastApply, useFastPath } from '../../core/train/fast';
import { momentumUpdate } from '../../core/train/fast/sgdUpdate';

function randomTensor(shape: number[], rng: Rng, scale = 1, offset = 0): TF.Tensor {
  const v = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < v.length; i++) v[i] = offset + scale * rng.normal();
  return tf.tensor(v, shape);
}

/** Native calls per op name while `f` runs (tfjs-node's binding.executeOp, every kernel's way into TensorFlow). */
function countNativeCalls(f: () => void): Map<string, number> {
  const backend = tf.backend() as unknown as { binding: { executeOp: (...a: unknown[]) => unknown } };
  const binding = backend.binding;
  const calls = new Map<string, number>();
  const counted = (...a: unknown[]) => {
    calls.set(a[0] as string, (calls.get(a[0] as string) ?? 0) + 1);
    return binding.executeOp(...a);
  };
  backend.binding = Object.defineProperty(Object.create(binding), 'executeOp', { value: counted });
  try {
    f();
  } finally {
    backend.binding = binding;
  }
  return calls;
}

function relChange(from: ArrayLike<number>, to: ArrayLike<number>): number {
  let d = 0;
  let m = 0;
  for (let i = 0; i < from.length; i++) {
    d = Math.max(d, Math.abs(to[i] - from[i]));
    m = Math.max(m, Math.abs(from[i]));
  }
  return d / Math.max(m, 1e-12);
}

const total = (calls: Map<string, number>) => [...calls.values()].reduce((s, n) => s + n, 0);

interface Trainer {
  model: TF.LayersModel;
  step(): number;
  dispose(): void;
}

/** One model trained by SGD (momentum, weight decay: the bench's settings) on fixed batches. */
function trainer(model: TF.LayersModel, batches: [TF.Tensor, TF.Tensor1D][], reference: boolean): Trainer {
  const vars = trainableVariables(model);
  const optimizer = new SgdMomentum(vars, { momentum: 0.9, weightDecay: 5e-4, fast: true });
  let i = 0;
  return {
    model,
    step() {
      const [x, y] = batches[i++ % batches.length];
      const { value, grads } = tf.variableGrads(
        () => tf.tidy(() => crossEntropy(fastApply(model, x, true, { reference }) as TF.Tensor2D, y)),
        vars,
      );
      optimizer.step(vars.map((v) => grads[v.name]), 0.05);
      tf.dispose(grads);
      const loss = value.dataSync()[0];
      value.dispose();
      return loss;
    },
    dispose() {
      optimizer.dispose();
      model.dispose();
    },
  };
}

/** Every weight of `b` equals `a`'s exactly (moving statistics included); names the first that differs. */
function assertSameWeights(a: TF.LayersModel, b: TF.LayersModel, label: string): void {
  a.weights.forEach((w, i) => {
    const x = w.read().dataSync();
    const y = b.weights[i].read().dataSync();
    assert.equal(y.length, x.length);
    for (let j = 0; j < x.length; j++) {
      if (!Object.is(x[j], y[j])) assert.fail(`${label}: ${w.originalName}[${j}] is ${y[j]}, the reference walk gives ${x[j]}`);
    }
  });
}

const STEPS = 3;

for (const arch of ['resnet20', 'smallCnn'] as ArchitectureName[]) {
  test(`${arch}: ${STEPS} SGD steps with the per-step savings give the reference walk's weights bit for bit, in fewer native calls, leaking no tensor`, () => {
    assert.ok(useFastPath(), 'the native kernels must run here');
    const rng = new Rng(22);
    const batches: [TF.Tensor, TF.Tensor1D][] = [0, 1].map(() => [
      randomTensor([16, 32, 32, 3], rng, 0.3, 0.5),
      tf.tensor1d(Array.from({ length: 16 }, () => Math.floor(rng.next() * 10)), 'int32'),
    ]);
    const a = buildModel(arch, { height: 32, width: 32, channels: 3 }, 10, 7);
    const b = buildModel(arch, { height: 32, width: 32, channels: 3 }, 10, 7);
    b.setWeights(a.getWeights());
    const ref = trainer(a, batches, true);
    const fast = trainer(b, batches, false);

    const refCalls = countNativeCalls(() => ref.step());
    const before = tf.memory().numTensors;
    const fastCalls = countNativeCalls(() => fast.step());
    assertSameWeights(a, b, `${arch} after step 1`);
    // the warm-up step above made every lazily built tensor; from here on, a step leaves none
    for (let s = 2; s <= STEPS; s++) {
      const lossRef = ref.step();
      const lossFast = fast.step();
      assert.ok(Number.isFinite(lossRef));
      assert.ok(Object.is(lossFast, lossRef), `${arch} step ${s}: loss ${lossFast}, reference ${lossRef}`);
      assert.equal(tf.memory().numTensors, before, `${arch}: live tensors after step ${s} of the fast walk`);
      assertSameWeights(a, b, `${arch} after step ${s}`);
    }

    // the savings are real: per residual Add, its clone's Cast and the add gradient's two Reshapes go;
    // the BN moving updates are a handful of calls instead of 6-7 per layer
    const adds = b.layers.filter((l) => l.getClassName() === 'Add').length;
    const bns = b.layers.filter((l) => l.getClassName() === 'BatchNormalization').length;
    assert.equal(adds, arch === 'resnet20' ? 9 : 0);
    assert.equal(fastCalls.get('Cast') ?? 0, (refCalls.get('Cast') ?? 0) - adds);
    assert.equal(fastCalls.get('Reshape') ?? 0, (refCalls.get('Reshape') ?? 0) - 2 * adds);
    const small = (c: Map<string, number>) => (c.get('Mul') ?? 0) + (c.get('Sub') ?? 0);
    assert.ok(small(refCalls) - small(fastCalls) >= 6 * bns - 4, `Mul + Sub: ${small(fastCalls)} vs ${small(refCalls)}`);
    assert.ok(total(fastCalls) < total(refCalls) - 5 * bns, `native calls per step ${total(fastCalls)} vs ${total(refCalls)}`);

    ref.dispose();
    fast.dispose();
    tf.dispose(batches.flat());
  });
}

test('a BN layer applied twice in one forward updates its moving statistics twice, in order, as the reference walk does', () => {
  const build = () => {
    const input = tf.input({ shape: [6, 6, 4] });
    const shared = tf.layers.batchNormalization({ momentum: 0.8, epsilon: 1e-3 });
    let x = shared.apply(input) as TF.SymbolicTensor;
    x = tf.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', useBias: false, kernelInitializer: 'ones' }).apply(x) as TF.SymbolicTensor;
    x = shared.apply(x) as TF.SymbolicTensor;
    const other = tf.layers.batchNormalization({ momentum: 0.5 }).apply(x) as TF.SymbolicTensor;
    const sum = tf.layers.add().apply([x, other]) as TF.SymbolicTensor;
    const out = tf.layers.dense({ units: 3, kernelInitializer: 'ones' }).apply(tf.layers.flatten().apply(sum) as TF.SymbolicTensor) as TF.SymbolicTensor;
    return tf.model({ inputs: input, outputs: out });
  };
  const a = build();
  const b = build();
  b.setWeights(a.getWeights());
  const rng = new Rng(3);
  const x = randomTensor([5, 6, 6, 4], rng, 2, 1);
  const y = tf.tensor1d([0, 1, 2, 0, 1], 'int32');
  const ref = trainer(a, [[x, y]], true);
  const fast = trainer(b, [[x, y]], false);
  for (let s = 1; s <= 2; s++) {
    ref.step();
    fast.step();
    assertSameWeights(a, b, `step ${s}`);
  }
  // and the statistics did move (twice per step for the shared layer): not the initial 0 and 1
  const mean = a.weights.find((w) => /moving_mean/.test(w.originalName))!.read().dataSync();
  assert.ok(Array.from(mean).some((v) => Math.abs(v) > 1e-3));
  ref.dispose();
  fast.dispose();
  tf.dispose([x, y]);
});

for (const nesterov of [false, true]) {
  test(`SGD update${nesterov ? ' (Nesterov)' : ''} of same-shape variables stacked: weights and velocities bit-identical to one variable at a time, in fewer native calls`, () => {
    const a = buildModel('resnet20', { height: 32, width: 32, channels: 3 }, 10, 5);
    const b = buildModel('resnet20', { height: 32, width: 32, channels: 3 }, 10, 5);
    b.setWeights(a.getWeights());
    const va = trainableVariables(a);
    const vb = trainableVariables(b);
    const zeros = (vars: TF.Variable[]) => tf.tidy(() => vars.map((v) => tf.variable(tf.zerosLike(v), false)));
    const velA = zeros(va);
    const velB = zeros(vb);
    const rng = new Rng(11);
    const shapes = new Set(va.map((v) => v.shape.join('x'))).size;
    let perVariable = new Map<string, number>();
    let stacked = new Map<string, number>();
    const initial = va[0].dataSync().slice();
    const before = tf.memory().numTensors;
    for (let s = 1; s <= 4; s++) {
      const grads = va.map((v) => randomTensor(v.shape, rng, 0.1));
      perVariable = countNativeCalls(() => momentumUpdate(va, velA, grads, 0.05 * s, 0.9, 5e-4, nesterov, false));
      stacked = countNativeCalls(() => momentumUpdate(vb, velB, grads, 0.05 * s, 0.9, 5e-4, nesterov));
      tf.dispose(grads);
      assert.equal(tf.memory().numTensors, before, `live tensors after step ${s}`);
    }
    assertSameWeights(a, b, 'weights after 4 updates');
    velA.forEach((v, i) => {
      const x = v.dataSync();
      const y = velB[i].dataSync();
      for (let j = 0; j < x.length; j++) if (!Object.is(x[j], y[j])) assert.fail(`velocity ${i}[${j}]: ${y[j]} vs ${x[j]}`);
    });
    assert.ok(relChange(initial, va[0].dataSync()) > 1e-3, 'the updates moved the weights');
    // per variable: 5 calls (7 with Nesterov); stacked: the same per shape plus 3 Packs and 2 Unpacks per shared shape
    const opsPer = nesterov ? 7 : 5;
    assert.equal(total(perVariable), opsPer * va.length);
    const shared = [...new Set(va.map((v) => v.shape.join('x')))].filter((k) => va.filter((v) => v.shape.join('x') === k).length > 1).length;
    assert.equal(total(stacked), opsPer * shapes + 5 * shared);
    assert.ok(total(stacked) < total(perVariable) / 2, `${total(stacked)} vs ${total(perVariable)} native calls`);
    tf.dispose([...velA, ...velB]);
    a.dispose();
    b.dispose();
  });
}
