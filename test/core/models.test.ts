/**
 * Built-in architectures, seeded initialisation, inference helpers and the two model
 * encodings (store blob, user-facing tfjs layers directory).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../../core/tf';
import { architectureNames, buildModel } from '../../core/models/architectures';
import { encodePixels, predictLabels, predictProbabilities } from '../../core/models/classifier';
import {
  ModelFormatError,
  cloneClassifier,
  createClassifier,
  decodeClassifier,
  encodeClassifier,
  exportLayersModel,
  importLayersModel,
} from '../../core/models/layersFormat';
import { generateSyntheticDataset } from '../../core/data/synthetic';
import type { ImageDataset } from '../../core/data/dataset';
import { trainClassifier } from '../../core/train/trainClassifier';
import { TrainRecipe } from '../../core/train/recipe';

const shape8 = { height: 8, width: 8, channels: 3 };

function weightsOf(model: TF.LayersModel): Float32Array[] {
  return model.getWeights().map((t) => Float32Array.from(t.dataSync() as Float32Array));
}

function sameArrays(a: Float32Array[], b: Float32Array[]): boolean {
  return a.length === b.length && a.every((x, i) => x.length === b[i].length && x.every((v, j) => Object.is(v, b[i][j])));
}

function data(size = 24, seed = 1, numClasses = 4): ImageDataset {
  return generateSyntheticDataset({ size, numClasses, height: 8, width: 8, channels: 3, seed });
}

function toTensor(ds: ImageDataset, range: '0-1' | '0-255' | '-1-1' = '0-1'): TF.Tensor4D {
  const out = encodePixels(ds.images, range, new Float32Array(ds.images.length));
  return tf.tensor4d(out, [ds.labels.length, ds.height, ds.width, ds.channels]);
}

async function tmpDir(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'ntml-models-'));
}

test('architectures: every built-in model maps 8x8x3 images to logits of numClasses', () => {
  for (const arch of architectureNames) {
    const m = buildModel(arch, shape8, 5, 0);
    assert.deepEqual(m.inputs[0].shape, [null, 8, 8, 3], arch);
    assert.deepEqual(m.outputs[0].shape, [null, 5], arch);
    const out = tf.tidy(() => m.predict(tf.zeros([2, 8, 8, 3])) as TF.Tensor);
    assert.deepEqual(out.shape, [2, 5]);
    out.dispose();
    m.dispose();
  }
});

test('preactResnet18: the paper tier\'s PreAct-ResNet18 for CIFAR-10 has its 11,171,146 trainable parameters', () => {
  const m = buildModel('preactResnet18', { height: 32, width: 32, channels: 3 }, 10, 0);
  const trainable = m.trainableWeights.reduce((n, w) => n + (w.shape as number[]).reduce((a, b) => a * b, 1), 0);
  // stem 1,728; stages 147,968 / 525,184 / 2,098,944 / 8,392,192 (BN gamma and beta included); linear 5,130
  assert.equal(trainable, 11_171_146);
  const layerNames = m.layers.map((l) => l.name);
  assert.deepEqual(layerNames.filter((n) => n.endsWith('_proj_conv')), ['s2b1_proj_conv', 's3b1_proj_conv', 's4b1_proj_conv']);
  assert.equal(layerNames.filter((n) => n.endsWith('_add')).length, 8);
  assert.deepEqual(m.getLayer('s4b2_add').outputShape, [null, 4, 4, 512]);
  m.dispose();
});

test('architectures: initialisation is a function of the seed; BN and kernels follow the documented scheme', () => {
  const a = buildModel('tinyCnn', shape8, 4, 7);
  const b = buildModel('tinyCnn', shape8, 4, 7);
  const c = buildModel('tinyCnn', shape8, 4, 8);
  const wa = weightsOf(a);
  assert.ok(sameArrays(wa, weightsOf(b)), 'same seed -> bit-identical weights');
  const wc = weightsOf(c);
  const differing = wa.filter((w, i) => !w.every((v, j) => v === wc[i][j])).length;
  // kernels and dense biases differ; BN parameters (constants) do not
  assert.ok(differing >= 4, `a different seed changes the random weights (${differing} arrays differ)`);

  a.weights.forEach((w, i) => {
    const [layer, role] = w.originalName.split('/');
    const values = wa[i];
    if (role === 'gamma' || role === 'moving_variance') assert.ok(values.every((v) => v === 1), w.originalName);
    else if (role === 'beta' || role === 'moving_mean') assert.ok(values.every((v) => v === 0), w.originalName);
    else if (role === 'kernel' && layer.endsWith('_conv')) {
      const fanIn = w.shape[0]! * w.shape[1]! * w.shape[2]!;
      const mean = values.reduce((s, v) => s + v, 0) / values.length;
      const std = Math.sqrt(values.reduce((s, v) => s + (v - mean) ** 2, 0) / values.length);
      const he = Math.sqrt(2 / fanIn);
      // b1 has 432 values, b2/b3 >= 4608: sampling error well under 15%
      assert.ok(Math.abs(std / he - 1) < 0.15, `${w.originalName}: std ${std} vs He ${he}`);
      assert.ok(Math.abs(mean) < he * 0.2, `${w.originalName}: mean ${mean}`);
    } else if (layer === 'logits') {
      const fanIn = role === 'kernel' ? w.shape[0]! : a.getLayer('logits').weights[0].shape[0]!;
      const bound = 1 / Math.sqrt(fanIn);
      assert.ok(values.every((v) => Math.abs(v) <= bound), `${w.originalName} within +-1/sqrt(fanIn)`);
      assert.ok(values.some((v) => v !== 0), `${w.originalName} is not all zeros`);
    }
  });
  for (const m of [a, b, c]) m.dispose();
});

test('encodePixels: each input range maps 0 and 255 to its ends, linearly', () => {
  const src = Uint8Array.from([0, 51, 255]);
  const out = new Float32Array(3);
  assert.deepEqual(Array.from(encodePixels(src, '0-255', out)), [0, 51, 255]);
  const unit = Array.from(encodePixels(src, '0-1', out));
  assert.equal(unit[0], 0);
  assert.ok(Math.abs(unit[1] - 0.2) < 1e-7 && Math.abs(unit[2] - 1) < 1e-7, `${unit}`);
  const sym = Array.from(encodePixels(src, '-1-1', out));
  assert.equal(sym[0], -1);
  assert.ok(Math.abs(sym[1] + 0.6) < 1e-6 && Math.abs(sym[2] - 1) < 1e-6, `${sym}`);
});

test('predictProbabilities / predictLabels: softmax(logits / T) of the inference-mode model, any batch size, no leaks', async () => {
  const ds = data(13);
  const c = createClassifier('tinyCnn', shape8, 4, 3);
  const x = toTensor(ds);
  const logits = (c.model.predict(x) as TF.Tensor).arraySync() as number[][];
  x.dispose();
  const before = tf.memory().numTensors;
  for (const temperature of [1, 4]) {
    const p = await predictProbabilities(c, ds, { temperature, batchSize: 5 });
    assert.equal(p.length, 13 * 4);
    for (let i = 0; i < 13; i++) {
      const z = logits[i].map((v) => v / temperature);
      const m = Math.max(...z);
      const e = z.map((v) => Math.exp(v - m));
      const s = e.reduce((a, b) => a + b, 0);
      for (let j = 0; j < 4; j++) assert.ok(Math.abs(p[i * 4 + j] - e[j] / s) < 1e-5, `row ${i} col ${j} at T=${temperature}`);
    }
  }
  const p1 = await predictProbabilities(c, ds);
  assert.ok(p1.some((v) => v > 0.01 && v < 0.99), 'the test needs probabilities that are not saturated');
  const p4 = await predictProbabilities(c, ds, { temperature: 4 });
  // a higher temperature flattens every row
  for (let i = 0; i < 13; i++) {
    assert.ok(Math.max(...p4.subarray(i * 4, i * 4 + 4)) <= Math.max(...p1.subarray(i * 4, i * 4 + 4)) + 1e-7);
  }
  const labels = await predictLabels(c, ds, 4);
  const whole = await predictLabels(c, ds);
  assert.deepEqual(labels, whole);
  for (let i = 0; i < 13; i++) assert.equal(labels[i], logits[i].indexOf(Math.max(...logits[i])));
  assert.equal(tf.memory().numTensors, before, 'inference leaves no tensors behind');

  // the input range is applied: the same weights read 0-255 pixels differently
  const raw = await predictProbabilities({ ...c, meta: { ...c.meta, inputRange: '0-255' } }, ds);
  assert.ok(raw.some((v, i) => Math.abs(v - p1[i]) > 1e-3));
  c.model.dispose();
});

test('predict: a data set of another shape or class count is refused', async () => {
  const c = createClassifier('tinyCnn', shape8, 4, 3);
  const wrongShape = generateSyntheticDataset({ size: 4, numClasses: 4, height: 16, width: 16, channels: 3, seed: 1 });
  await assert.rejects(predictLabels(c, wrongShape), /expects 8x8x3 images .* 16x16x3/);
  const wrongClasses = data(4, 1, 5);
  await assert.rejects(predictProbabilities(c, wrongClasses), /4 outputs .* 5 classes/);
  c.model.dispose();
});

test('encodeClassifier / decodeClassifier / cloneClassifier: same function, same meta, independent variables', async () => {
  const ds = data(10);
  const c = createClassifier('tinyCnn', shape8, 4, 5);
  c.meta.inputRange = '-1-1';
  const bytes = await encodeClassifier(c);
  assert.equal(Buffer.from(bytes.subarray(0, 8)).toString('latin1'), 'NTMLMDL1');
  const d = await decodeClassifier(bytes, 'store://x');
  assert.deepEqual(d.meta, c.meta);
  assert.ok(sameArrays(weightsOf(d.model), weightsOf(c.model)));
  assert.deepEqual(await predictProbabilities(d, ds), await predictProbabilities(c, ds));

  const clone = await cloneClassifier(c);
  const original = weightsOf(c.model);
  clone.model.setWeights(clone.model.getWeights().map((w) => tf.add(w, 1)));
  assert.ok(sameArrays(weightsOf(c.model), original), 'changing the clone leaves the original untouched');
  assert.ok(!sameArrays(weightsOf(clone.model), original));

  const bad = Uint8Array.from(bytes);
  bad[0] = 0x41;
  await assert.rejects(decodeClassifier(bad, 'store://bad'), (e: Error) => e instanceof ModelFormatError && /store:\/\/bad: .*bad magic/.test(e.message));
  await assert.rejects(decodeClassifier(bytes.subarray(0, 20), 'store://short'), (e: Error) => e instanceof ModelFormatError && /store:\/\/short: truncated/.test(e.message));
  for (const m of [c, d, clone]) m.model.dispose();
});

test('exportLayersModel / importLayersModel: a built-in model round-trips through model.json + weights.bin', async () => {
  const dir = await tmpDir();
  try {
    const ds = data(10);
    const c = createClassifier('tinyCnn', shape8, 4, 9);
    const files = await exportLayersModel(c, dir);
    assert.deepEqual(files, { modelJson: path.join(dir, 'model.json'), weightsBin: path.join(dir, 'weights.bin') });
    assert.deepEqual((await fs.readdir(dir)).sort(), ['model.json', 'weights.bin'], 'no temporary files left');
    const json = JSON.parse(await fs.readFile(files.modelJson, 'utf8'));
    assert.equal(json.format, 'layers-model');
    assert.deepEqual(json.weightsManifest[0].paths, ['weights.bin']);
    const back = await importLayersModel(files.modelJson, '0-255');
    // the ntml metadata wins over the caller's guess
    assert.deepEqual(back.meta, c.meta);
    assert.deepEqual(await predictProbabilities(back, ds), await predictProbabilities(c, ds));
    c.model.dispose();
    back.model.dispose();
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

function userSoftmaxModel(): TF.Sequential {
  const m = tf.sequential();
  m.add(tf.layers.conv2d({ inputShape: [8, 8, 3], filters: 4, kernelSize: 3, activation: 'relu', kernelInitializer: 'glorotUniform' }));
  m.add(tf.layers.flatten());
  m.add(tf.layers.dense({ units: 4, activation: 'softmax' }));
  return m;
}

test('importLayersModel: a user model ending in a softmax Dense trains on logits and exports with softmax restored', async () => {
  const dir = await tmpDir();
  try {
    const ds = data(32, 4);
    const user = userSoftmaxModel();
    // deterministic, non-trivial weights
    user.setWeights(user.getWeights().map((w, i) => tf.mul(tf.sin(tf.add(tf.range(0, w.size).reshape(w.shape), i)), 0.3)));
    await user.save(`file://${path.join(dir, 'user')}`);
    const x = toTensor(ds);
    const userProbs = (user.predict(x) as TF.Tensor).arraySync() as number[][];

    const c = await importLayersModel(path.join(dir, 'user', 'model.json'));
    assert.equal(c.meta.exportedOutputActivation, 'softmax');
    assert.equal(c.meta.arch, 'custom');
    assert.deepEqual(c.meta.inputShape, [8, 8, 3]);
    assert.equal(c.meta.numClasses, 4);
    assert.equal(c.meta.inputRange, '0-1');
    // the imported model outputs logits: rows do not sum to 1, but their softmax is the user's output
    const raw = (c.model.predict(x) as TF.Tensor).arraySync() as number[][];
    assert.ok(raw.some((r) => Math.abs(r.reduce((a, b) => a + b, 0) - 1) > 1e-2), 'outputs are logits, not probabilities');
    const probs = await predictProbabilities(c, ds);
    userProbs.forEach((row, i) => row.forEach((v, j) => assert.ok(Math.abs(v - probs[i * 4 + j]) < 1e-5, `row ${i}`)));
    const argmax = userProbs.map((r) => r.indexOf(Math.max(...r)));
    assert.deepEqual(Array.from(await predictLabels(c, ds)), argmax);

    // training on logits works and changes the model
    const before = weightsOf(c.model);
    const result = await trainClassifier({
      classifier: c,
      data: ds,
      recipe: TrainRecipe.parse({ epochs: 2, batchSize: 16, learningRate: 0.05, augment: { padding: 0, flip: false } }),
      seed: 1,
    });
    assert.ok(result.history.every((h) => Number.isFinite(h.loss) && h.loss > 0));
    assert.ok(!sameArrays(weightsOf(c.model), before));

    // export: the softmax is back, and the exported file computes softmax(trained logits)
    const out = path.join(dir, 'out');
    await exportLayersModel(c, out);
    const json = JSON.parse(await fs.readFile(path.join(out, 'model.json'), 'utf8'));
    const layers = json.modelTopology.config.layers;
    assert.equal(layers[layers.length - 1].config.activation, 'softmax');
    const reloaded = await tf.loadLayersModel(`file://${path.join(out, 'model.json')}`);
    const exported = (reloaded.predict(x) as TF.Tensor).arraySync() as number[][];
    const trained = await predictProbabilities(c, ds);
    exported.forEach((row, i) => {
      assert.ok(Math.abs(row.reduce((a, b) => a + b, 0) - 1) < 1e-5);
      row.forEach((v, j) => assert.ok(Math.abs(v - trained[i * 4 + j]) < 1e-5));
    });
    // and importing the export again still knows it ends in softmax
    const again = await importLayersModel(path.join(out, 'model.json'));
    assert.equal(again.meta.exportedOutputActivation, 'softmax');
    x.dispose();
    for (const m of [user, c.model, reloaded, again.model]) m.dispose();
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('importLayersModel: a separate Softmax layer at the end is refused with a clear message', async () => {
  const dir = await tmpDir();
  try {
    const m = tf.sequential();
    m.add(tf.layers.flatten({ inputShape: [8, 8, 1] }));
    m.add(tf.layers.dense({ units: 3 }));
    m.add(tf.layers.softmax());
    await m.save(`file://${dir}`);
    await assert.rejects(importLayersModel(path.join(dir, 'model.json')), (e: Error) => e instanceof ModelFormatError && /separate Softmax/.test(e.message));
    m.dispose();
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('importLayersModel: malformed model folders give a ModelFormatError naming the file', async () => {
  const dir = await tmpDir();
  try {
    const c = createClassifier('tinyCnn', shape8, 4, 2);
    const good = await exportLayersModel(c, path.join(dir, 'good'));
    c.model.dispose();
    const goodJson = JSON.parse(await fs.readFile(good.modelJson, 'utf8'));
    const weights = await fs.readFile(good.weightsBin);
    let n = 0;
    const expectBad = async (json: string | object, weightFile: Buffer | undefined, re: RegExp) => {
      const d = path.join(dir, `bad${n++}`);
      await fs.mkdir(d);
      const file = path.join(d, 'model.json');
      await fs.writeFile(file, typeof json === 'string' ? json : JSON.stringify(json));
      if (weightFile) await fs.writeFile(path.join(d, 'weights.bin'), weightFile);
      await assert.rejects(importLayersModel(file), (e: Error) => {
        assert.ok(e instanceof ModelFormatError, `${e.name}: ${e.message}`);
        assert.ok(e.message.startsWith(`${file}: `), e.message);
        assert.match(e.message, re);
        return true;
      });
    };
    await expectBad('{"format": "layers-model", "modelTopology": ', weights, /not valid JSON/);
    await expectBad({ ...goodJson, format: 'graph-model' }, weights, /graph-model.*graph models cannot be trained/);
    await expectBad({ format: 'layers-model', weightsManifest: goodJson.weightsManifest }, weights, /modelTopology/);
    await expectBad(goodJson, undefined, /weight file "weights.bin" .* missing/);
    await expectBad(goodJson, weights.subarray(0, weights.length - 4), new RegExp(`hold ${weights.length - 4} bytes, the manifest needs ${weights.length}`));
    await expectBad(goodJson, Buffer.concat([weights, Buffer.alloc(8)]), /the manifest needs/);
    await expectBad({ ...goodJson, weightsManifest: [{ ...goodJson.weightsManifest[0], paths: ['../good/weights.bin'] }] }, undefined, /"\.\.\/good\/weights\.bin" must stay inside/);
    await expectBad({ ...goodJson, weightsManifest: [{ ...goodJson.weightsManifest[0], paths: [good.weightsBin] }] }, undefined, /must stay inside/);
    await assert.rejects(importLayersModel(path.join(dir, 'nope', 'model.json')), (e: Error) => e instanceof ModelFormatError && /cannot read model\.json \(ENOENT\)/.test(e.message));
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});
