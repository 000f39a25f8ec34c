/**
 * The BN-folded inference graph (core/models/foldedInference) against tfjs-layers' own
 * model.predict, per architecture, with BN statistics far from their 0/1 initial values (set at
 * random, and learned by a few training steps), eagerly and as one TensorFlow session
 * (core/models/graphInference); that evaluations use it, that it leaves the model and the tensor
 * count as they were, and its fallbacks.
 */
import { test } from 'node:test';
import { readdirSync } from 'node:fs';
import * as os from 'node:os';
import assert from 'node:assert/strict';
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../../core/tf';
import { Rng } from '../../core/rng';
import { generateSyntheticSplits } from '../../core/data/synthetic';
import { buildModel, type ArchitectureName } from '../../core/models/architectures';
import { createClassifier } from '../../core/models/layersFormat';
import { imagesToTensor, predictLabels, predictProbabilities, type Classifier } from '../../core/models/classifier';
import { inferenceGraph, type InferenceGraph } from '../../core/models/foldedInference';
import { evaluationGraph, sessionInferenceGraph } from '../../core/models/graphInference';
import { trainClassifier } from '../../core/train/trainClassifier';
import { TrainRecipe } from '../../core/train/recipe';

function randomTensor(shape: number[], rng: Rng, scale: number, offset = 0): TF.Tensor {
  const size = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(size);
  for (let i = 0; i < size; i++) v[i] = offset + scale * rng.normal();
  return tf.tensor(v, shape);
}

/**
 * The architecture's own seeded init for conv and dense weights, and every BN parameter at
 * random: gamma in [0.5, 1.5], moving variance in [0.5, 2], beta and moving mean around 0 with
 * spread 0.3, so a fold that dropped any term (or used the variance where the std belongs)
 * shows, while 20 layers of residual sums keep logits of a size where an absolute tolerance
 * means something in float32.
 */
function withRandomBatchNorm(model: TF.LayersModel, seed: number): TF.LayersModel {
  const rng = new Rng(seed);
  const uniform = (shape: number[], lo: number, hi: number) => {
    const v = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < v.length; i++) v[i] = rng.uniform(lo, hi);
    return tf.tensor(v, shape);
  };
  const values = model.weights.map((w) => {
    const role = w.originalName.split('/')[1];
    const shape = w.shape as number[];
    if (role === 'gamma') return uniform(shape, 0.5, 1.5);
    if (role === 'moving_variance') return uniform(shape, 0.5, 2);
    if (role === 'beta' || role === 'moving_mean') return randomTensor(shape, rng, 0.3);
    return w.read().clone();
  });
  model.setWeights(values);
  tf.dispose(values);
  return model;
}

function images(n: number, size: number, seed: number): TF.Tensor4D {
  const rng = new Rng(seed);
  const v = new Float32Array(n * size * size * 3);
  for (let i = 0; i < v.length; i++) v[i] = rng.uniform(0, 1);
  return tf.tensor4d(v, [n, size, size, 3]);
}

function maxAbsDiff(a: TF.Tensor, b: TF.Tensor): number {
  const x = a.dataSync();
  const y = b.dataSync();
  assert.equal(x.length, y.length);
  let d = 0;
  for (let i = 0; i < x.length; i++) d = Math.max(d, Math.abs(x[i] - y[i]));
  return d;
}

function batchNormCount(model: TF.LayersModel): number {
  return model.layers.filter((l) => l.getClassName() === 'BatchNormalization').length;
}

/** Folded logits vs model.predict on one batch: max abs difference, argmax agreement, logit scale. */
function compare(model: TF.LayersModel, x: TF.Tensor4D, graph: InferenceGraph = inferenceGraph(model, true)): { diff: number; sameArgmax: boolean; scale: number } {
  try {
    return tf.tidy(() => {
      const folded = graph.logits(x);
      const reference = model.predict(x) as TF.Tensor;
      const a = folded.argMax(-1).dataSync();
      const b = reference.argMax(-1).dataSync();
      return {
        diff: maxAbsDiff(folded, reference),
        sameArgmax: a.every((v, i) => v === b[i]),
        scale: reference.abs().max().dataSync()[0],
      };
    });
  } finally {
    graph.dispose();
  }
}

// every BN of these architectures follows a Conv2D; ReLUs that follow a BN directly are folded too
const expected: Record<'tinyCnn' | 'smallCnn' | 'resnet20', { batchNorms: number; relus: number }> = {
  tinyCnn: { batchNorms: 3, relus: 3 },
  smallCnn: { batchNorms: 6, relus: 6 },
  // 19 conv-BN pairs + 2 projection shortcuts; the ReLU after each residual add stays its own op
  resnet20: { batchNorms: 21, relus: 10 },
};

for (const arch of Object.keys(expected) as (keyof typeof expected)[]) {
  test(`${arch}: folded logits equal model.predict's with non-trivial BN statistics, argmax identical`, (t) => {
    const model = withRandomBatchNorm(buildModel(arch, { height: 32, width: 32, channels: 3 }, 10, 3), 11);
    const x = images(64, 32, 5);
    const before = tf.memory().numTensors;
    const graph = inferenceGraph(model, true);
    assert.equal(graph.fallbackReason, undefined);
    assert.equal(graph.foldedBatchNorms, batchNormCount(model));
    assert.equal(graph.foldedBatchNorms, expected[arch].batchNorms);
    assert.equal(graph.foldedRelus, expected[arch].relus);
    graph.dispose();
    const r = compare(model, x);
    assert.equal(tf.memory().numTensors, before, 'no tensor left behind by folding, running and disposing');
    t.diagnostic(`max abs logit difference ${r.diff.toExponential(2)}, max |logit| ${r.scale.toFixed(2)}`);
    assert.ok(r.scale > 0.5, `logits of a useful size (max |logit| ${r.scale})`);
    assert.ok(r.diff < 1e-4, `max abs logit difference ${r.diff} (max |logit| ${r.scale})`);
    assert.ok(r.sameArgmax, 'argmax identical on the batch');
    x.dispose();
    model.dispose();
  });
}

const sessionFolders = () => readdirSync(os.tmpdir()).filter((f) => f.startsWith('ntml-inference-')).length;

for (const arch of Object.keys(expected) as (keyof typeof expected)[]) {
  test(`${arch}: the folded graph as one TensorFlow session gives model.predict's logits; no tensor or folder left`, async (t) => {
    const model = withRandomBatchNorm(buildModel(arch, { height: 32, width: 32, channels: 3 }, 10, 3), 11);
    const x = images(64, 32, 5);
    const tensors = tf.memory().numTensors;
    const folders = sessionFolders();
    const graph = await sessionInferenceGraph(model);
    assert.ok(typeof graph !== 'string', `session graph built: ${graph}`);
    assert.equal(graph.foldedBatchNorms, expected[arch].batchNorms);
    const r = compare(model, x, graph);
    t.diagnostic(`max abs logit difference ${r.diff.toExponential(2)}, max |logit| ${r.scale.toFixed(2)}`);
    assert.ok(r.diff < 1e-4, `max abs logit difference ${r.diff} (max |logit| ${r.scale})`);
    assert.ok(r.sameArgmax, 'argmax identical on the batch');
    assert.equal(tf.memory().numTensors, tensors, 'no tensor left behind');
    assert.equal(sessionFolders(), folders, 'the temporary SavedModel folder is removed');
    x.dispose();
    model.dispose();
  });
}

test('a layer without a graph form: the session graph says which, and evaluations fall back to the eager folded graph', async () => {
  const input = tf.input({ shape: [8, 8, 3] });
  let y = tf.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', useBias: false }).apply(input) as TF.SymbolicTensor;
  y = tf.layers.batchNormalization().apply(y) as TF.SymbolicTensor;
  y = tf.layers.flatten().apply(y) as TF.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: tf.layers.dense({ units: 3, activation: 'softmax', name: 'probs' }).apply(y) as TF.SymbolicTensor });
  assert.match(String(await sessionInferenceGraph(model)), /probs: Dense with activation softmax/);
  const saved = process.env.NTML_FOLDED_INFERENCE;
  process.env.NTML_FOLDED_INFERENCE = 'graph';
  try {
    const g = await evaluationGraph(model);
    assert.equal(g.foldedBatchNorms, 1, 'the eager folded graph');
    const x = images(4, 8, 9);
    const r = compare(model, x, g);
    assert.ok(r.diff < 1e-5, `eager fallback vs predict: ${r.diff}`);
    x.dispose();
  } finally {
    if (saved === undefined) delete process.env.NTML_FOLDED_INFERENCE;
    else process.env.NTML_FOLDED_INFERENCE = saved;
  }
  model.dispose();
});

test('a session that cannot be built (no writable temporary folder) leaves evaluations on the eager folded graph', async () => {
  const model = withRandomBatchNorm(buildModel('tinyCnn', { height: 32, width: 32, channels: 3 }, 10, 3), 14);
  const saved = { tmp: process.env.TMPDIR, mode: process.env.NTML_FOLDED_INFERENCE };
  process.env.TMPDIR = '/nonexistent/ntml-tmp';
  process.env.NTML_FOLDED_INFERENCE = 'graph';
  try {
    await assert.rejects(sessionInferenceGraph(model), /ENOENT/);
    const tensors = tf.memory().numTensors;
    const g = await evaluationGraph(model);
    assert.equal(g.foldedBatchNorms, 3);
    const x = images(8, 32, 10);
    const r = compare(model, x, g);
    assert.ok(r.diff < 1e-4 && r.sameArgmax, `eager fallback vs predict: ${r.diff}`);
    x.dispose();
    assert.equal(tf.memory().numTensors, tensors, 'the failed build left no folded weights behind');
  } finally {
    for (const [k, v] of [['TMPDIR', saved.tmp], ['NTML_FOLDED_INFERENCE', saved.mode]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
  model.dispose();
});

test('preactResnet18 (BN after an add, not after a conv): unfoldable BNs run as layers, logits still equal', () => {
  const model = withRandomBatchNorm(buildModel('preactResnet18', { height: 16, width: 16, channels: 3 }, 10, 3), 12);
  const x = images(8, 16, 6);
  const graph = inferenceGraph(model, true);
  // bn2 follows conv1 in every block; bn1 follows the stem or an add and stays a layer
  assert.equal(graph.foldedBatchNorms, 8);
  graph.dispose();
  const r = compare(model, x);
  assert.ok(r.diff < 1e-4 * Math.max(1, r.scale), `max abs logit difference ${r.diff} (max |logit| ${r.scale})`);
  assert.ok(r.sameArgmax);
  x.dispose();
  model.dispose();
});

/** A classifier on synthetic data trained for a few steps, so its moving statistics are learned ones. */
async function trainedClassifier(arch: ArchitectureName): Promise<{ c: Classifier; test: ReturnType<typeof generateSyntheticSplits>['test'] }> {
  const { train, test } = generateSyntheticSplits({ trainSize: 256, testSize: 128, numClasses: 4, height: 32, width: 32, channels: 3, seed: 4 });
  const c = createClassifier(arch, train, 4, 1);
  const recipe = TrainRecipe.parse({ epochs: 1, batchSize: 32, learningRate: 0.05, schedule: 'constant', augment: { padding: 0, flip: false } });
  await trainClassifier({ classifier: c, data: train, recipe, seed: 2 });
  return { c, test };
}

test('after training steps: predictLabels (eager and session) and predictProbabilities (the evaluation entry points) match model.predict; the model is unchanged', async () => {
  const { c, test: ds } = await trainedClassifier('smallCnn');
  const moving = c.model.weights.filter((w) => /moving_mean$/.test(w.originalName))[0].read().dataSync();
  assert.ok(moving.some((v) => Math.abs(v) > 1e-3), 'training moved the BN statistics away from 0');
  const weightsBefore = c.model.getWeights().map((w) => w.dataSync().slice());
  const tensorsBefore = tf.memory().numTensors;

  const labels = await predictLabels(c, ds, 50);
  const probs = await predictProbabilities(c, ds, { batchSize: 50 });
  assert.equal(tf.memory().numTensors, tensorsBefore, 'evaluation leaves no tensor behind');
  const saved = process.env.NTML_FOLDED_INFERENCE;
  process.env.NTML_FOLDED_INFERENCE = 'graph';
  let sessionLabels: Int32Array;
  try {
    sessionLabels = await predictLabels(c, ds, 50);
  } finally {
    if (saved === undefined) delete process.env.NTML_FOLDED_INFERENCE;
    else process.env.NTML_FOLDED_INFERENCE = saved;
  }
  assert.equal(tf.memory().numTensors, tensorsBefore, 'the session path leaves no tensor behind');

  const reference = tf.tidy(() => {
    const logits = c.model.predict(imagesToTensor(ds, 0, ds.labels.length, c.meta.inputRange)) as TF.Tensor;
    return { labels: logits.argMax(-1).dataSync() as Int32Array, probs: tf.softmax(logits).dataSync() as Float32Array };
  });
  assert.deepEqual(Array.from(labels), Array.from(reference.labels));
  assert.deepEqual(Array.from(sessionLabels), Array.from(reference.labels), 'NTML_FOLDED_INFERENCE=graph: same labels');
  let d = 0;
  for (let i = 0; i < probs.length; i++) d = Math.max(d, Math.abs(probs[i] - reference.probs[i]));
  assert.ok(d < 1e-5, `max probability difference ${d}`);

  const weightsAfter = c.model.getWeights().map((w) => w.dataSync());
  weightsBefore.forEach((w, i) => assert.deepEqual(weightsAfter[i], w, `weight ${c.model.weights[i].originalName} unchanged`));
  c.model.dispose();
});

test('NTML_FOLDED_INFERENCE=0 and an unwalkable model fall back to the unfolded forward with the same logits', () => {
  const model = withRandomBatchNorm(buildModel('tinyCnn', { height: 32, width: 32, channels: 3 }, 10, 3), 13);
  const x = images(16, 32, 7);
  const saved = process.env.NTML_FOLDED_INFERENCE;
  process.env.NTML_FOLDED_INFERENCE = '0';
  try {
    const plain = inferenceGraph(model);
    assert.equal(plain.foldedBatchNorms, 0);
    assert.match(plain.fallbackReason ?? '', /NTML_FOLDED_INFERENCE=0/);
    const d = tf.tidy(() => maxAbsDiff(plain.logits(x), model.predict(x) as TF.Tensor));
    assert.ok(d < 1e-4, `unfolded vs predict: ${d}`);
    process.env.NTML_FOLDED_INFERENCE = 'grpah';
    assert.throws(() => inferenceGraph(model), /NTML_FOLDED_INFERENCE must be 1 .*, got "grpah"/);
  } finally {
    if (saved === undefined) delete process.env.NTML_FOLDED_INFERENCE;
    else process.env.NTML_FOLDED_INFERENCE = saved;
  }

  // two inputs: not a graph the walk runs; it says why and still computes the model
  const a = tf.input({ shape: [4] });
  const b = tf.input({ shape: [4] });
  const sum = tf.layers.add().apply([a, b]) as TF.SymbolicTensor;
  const twoInputs = tf.model({ inputs: [a, b], outputs: tf.layers.dense({ units: 2 }).apply(sum) as TF.SymbolicTensor });
  const g = inferenceGraph(twoInputs, true);
  assert.match(g.fallbackReason ?? '', /2 inputs/);
  g.dispose();
  x.dispose();
  model.dispose();
  twoInputs.dispose();
});
