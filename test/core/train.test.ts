/**
 * The training loop and its parts: host-side augmentation, SGD with momentum (PyTorch
 * semantics), the cosine schedule, checkpoints, exact resume, selection, cancellation,
 * losses and tensor hygiene.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../../core/tf';
import { Rng } from '../../core/rng';
import type { ImageDataset } from '../../core/data/dataset';
import { subsetDataset } from '../../core/data/dataset';
import { generateSyntheticDataset } from '../../core/data/synthetic';
import { createClassifier } from '../../core/models/layersFormat';
import type { Classifier } from '../../core/models/classifier';
import { assembleBatch, noAugmentation } from '../../core/train/augment';
import { SgdMomentum, learningRateAt, trainableVariables } from '../../core/train/sgd';
import {
  CheckpointFormatError,
  decodeCheckpoint,
  encodeCheckpoint,
  finishedRunCheckpoint,
  modelWeights,
  setModelWeights,
  type TrainingCheckpoint,
} from '../../core/train/checkpoint';
import { runEpochs, TrainingCancelledError, type EpochRecord } from '../../core/train/epochLoop';
import { crossEntropy, softCrossEntropy, klToTarget, complementaryLoss } from '../../core/train/losses';
import { trainClassifier } from '../../core/train/trainClassifier';
import { TrainRecipe } from '../../core/train/recipe';
import { heldOutAccuracy } from '../../core/ntml/stages';

const shape8 = { height: 8, width: 8, channels: 3 };

function weightsOf(model: TF.LayersModel): Float32Array[] {
  return model.getWeights().map((t) => Float32Array.from(t.dataSync() as Float32Array));
}

function sameArrays(a: ArrayLike<number>[], b: ArrayLike<number>[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    if (a[i].length !== b[i].length) return false;
    for (let j = 0; j < a[i].length; j++) if (!Object.is(a[i][j], b[i][j])) return false;
  }
  return true;
}

function data(size: number, seed = 1): ImageDataset {
  return generateSyntheticDataset({ size, numClasses: 4, height: 8, width: 8, channels: 3, seed });
}

const recipe = (over: Partial<TrainRecipe> = {}): TrainRecipe =>
  TrainRecipe.parse({ epochs: 3, batchSize: 16, learningRate: 0.05, augment: { padding: 2, flip: true }, ...over });

/** history without wall-clock times */
const timeless = (h: EpochRecord[]) => h.map(({ seconds: _s, ...rest }) => rest);

// --- augmentation ---------------------------------------------------------------------------

/** A 4x5 image with 2 channels whose every value is distinct: v = 10*(y*5+x) + c + 3 */
function handImage(): ImageDataset {
  const H = 4;
  const W = 5;
  const C = 2;
  const images = new Uint8Array(2 * H * W * C);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) for (let c = 0; c < C; c++) images[(y * W + x) * C + c] = 10 * (y * W + x) + c + 3;
  // a second image: the first one inverted
  for (let i = 0; i < H * W * C; i++) images[H * W * C + i] = 255 - images[i];
  return { name: 'hand', height: H, width: W, channels: C, numClasses: 2, images, labels: Int32Array.from([0, 1]) };
}

/** An Rng stand-in that returns scripted draws. */
function scripted(ints: number[], nexts: number[]): Rng {
  return { int: () => ints.shift()!, next: () => nexts.shift()! } as unknown as Rng;
}

test('assembleBatch: no augmentation is an exact scaled copy, in the requested order', () => {
  const ds = handImage();
  const per = 40;
  const out = assembleBatch(ds, [1, 0], noAugmentation, new Rng(1), '0-255', new Float32Array(2 * per));
  assert.deepEqual(Array.from(out.subarray(0, per)), Array.from(ds.images.subarray(per, 2 * per)));
  assert.deepEqual(Array.from(out.subarray(per)), Array.from(ds.images.subarray(0, per)));
  const unit = assembleBatch(ds, [0], noAugmentation, new Rng(1), '0-1', new Float32Array(per));
  unit.forEach((v, i) => assert.ok(Math.abs(v - ds.images[i] / 255) < 1e-7));
  const sym = assembleBatch(ds, [0], noAugmentation, new Rng(1), '-1-1', new Float32Array(per));
  sym.forEach((v, i) => assert.ok(Math.abs(v - ((ds.images[i] * 2) / 255 - 1)) < 1e-6));
});

test('assembleBatch: crop shifts the image and fills with zero pixels; flip mirrors columns', () => {
  const ds = handImage();
  const { height: H, width: W, channels: C } = ds;
  const px = (y: number, x: number, c: number) => ds.images[(y * W + x) * C + c];
  const at = (out: Float32Array, y: number, x: number, c: number) => out[(y * W + x) * C + c];

  // padding 2: int(5) = 4 -> dy = +2, int(5) = 1 -> dx = -1; no flip (0.9 >= 0.5)
  let out = assembleBatch(ds, [0], { padding: 2, flip: true }, scripted([4, 1], [0.9]), '0-255', new Float32Array(40));
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      for (let c = 0; c < C; c++) {
        const sy = y + 2;
        const sx = x - 1;
        const expected = sy >= H || sx < 0 ? 0 : px(sy, sx, c);
        assert.equal(at(out, y, x, c), expected, `crop (${y},${x},${c})`);
      }
    }
  }
  // flip only (padding 0 draws nothing from int): out[y][x] = in[y][W-1-x]
  out = assembleBatch(ds, [0], { padding: 0, flip: true }, scripted([], [0.1]), '0-255', new Float32Array(40));
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) for (let c = 0; c < C; c++) assert.equal(at(out, y, x, c), px(y, W - 1 - x, c));
  // crop then flip, in the -1..1 range: padding is -1 (a zero pixel), content is the mirrored crop
  out = assembleBatch(ds, [0], { padding: 1, flip: true }, scripted([0, 2], [0.2]), '-1-1', new Float32Array(40));
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      for (let c = 0; c < C; c++) {
        const sy = y - 1;
        const sx = W - 1 - x + 1;
        const expected = sy < 0 || sx >= W ? -1 : (px(sy, sx, c) * 2) / 255 - 1;
        assert.ok(Math.abs(at(out, y, x, c) - expected) < 1e-6, `crop+flip (${y},${x},${c})`);
      }
    }
  }
});

test('assembleBatch: with a real Rng every shift and both flips occur, and output is padding or a source pixel', () => {
  const ds = handImage();
  const rng = new Rng(3);
  const seen = new Set<string>();
  const values = new Set(Array.from(ds.images.subarray(0, 40)));
  for (let t = 0; t < 300; t++) {
    const out = assembleBatch(ds, [0], { padding: 1, flip: true }, rng, '0-255', new Float32Array(40));
    out.forEach((v) => assert.ok(v === 0 || values.has(v)));
    // identify the transform from the position of pixel (1,1) channel 0 = 63
    const i = out.indexOf(63);
    if (i >= 0) seen.add(`${Math.floor(i / 10)},${(i % 10) >> 1}`);
  }
  // dy,dx in {-1,0,1}^2 and flips put (1,1) at 9 x 2 positions minus coincidences; at least 12 distinct
  assert.ok(seen.size >= 12, `saw ${seen.size} placements`);
});

// --- optimizer and schedule -------------------------------------------------------------------

test('SgdMomentum: two steps match PyTorch SGD (v = mu*v + g + wd*w; w -= lr*v); state restores exactly', () => {
  const w = tf.variable(tf.tensor1d([1, -2, 0.5]));
  const u = tf.variable(tf.tensor2d([[3, 4]]));
  const opt = new SgdMomentum([w, u], { momentum: 0.9, weightDecay: 0.1 });
  const g1 = [tf.tensor1d([0.5, 0.25, -1]), tf.tensor2d([[1, -1]])];
  const g2 = [tf.tensor1d([-0.5, 1, 2]), tf.tensor2d([[0, 2]])];
  const lr1 = 0.5;
  const lr2 = 0.25;
  opt.step(g1, lr1);
  const state1 = opt.state();
  opt.step(g2, lr2);

  const expect = (w0: number[], a: number[], b: number[]) => {
    const v1 = w0.map((x, i) => a[i] + 0.1 * x);
    const w1 = w0.map((x, i) => x - lr1 * v1[i]);
    const v2 = w1.map((x, i) => 0.9 * v1[i] + b[i] + 0.1 * x);
    const w2 = w1.map((x, i) => x - lr2 * v2[i]);
    return { v1, w2, v2 };
  };
  const ew = expect([1, -2, 0.5], [0.5, 0.25, -1], [-0.5, 1, 2]);
  const eu = expect([3, 4], [1, -1], [0, 2]);
  const close = (got: ArrayLike<number>, want: number[]) => want.forEach((x, i) => assert.ok(Math.abs(got[i] - x) < 1e-6, `${got[i]} vs ${x}`));
  close(w.dataSync(), ew.w2);
  close(u.dataSync(), eu.w2);
  close(state1[0].values, ew.v1);
  close(opt.state()[1].values, eu.v2);
  assert.deepEqual(opt.state()[1].shape, [1, 2]);

  // a fresh optimizer restored from state1 continues exactly as the original did
  const w2 = tf.variable(tf.tensor1d(ew.v1.map((v, i) => [1, -2, 0.5][i] - lr1 * v)));
  const u2 = tf.variable(tf.tensor2d([eu.v1.map((v, i) => [3, 4][i] - lr1 * v)]));
  const opt2 = new SgdMomentum([w2, u2], { momentum: 0.9, weightDecay: 0.1 });
  opt2.restore(state1);
  opt2.step(g2, lr2);
  close(w2.dataSync(), ew.w2);
  close(u2.dataSync(), eu.w2);
  assert.throws(() => opt2.restore(state1.slice(0, 1)), /1 buffers, the model needs 2/);
  assert.throws(() => opt2.restore([state1[1], state1[0]]), /shape/);
  opt.dispose();
  opt2.dispose();
  tf.dispose([w, u, w2, u2, ...g1, ...g2]);
});

test('SgdMomentum: creating, restoring and disposing an optimizer leaves no tensors behind', () => {
  const w = tf.variable(tf.ones([3, 3]));
  const before = tf.memory().numTensors;
  const opt = new SgdMomentum([w], { momentum: 0.9, weightDecay: 0 });
  const state = opt.state();
  opt.restore(state);
  opt.restore(state);
  const g = tf.ones([3, 3]);
  opt.step([g], 0.1);
  g.dispose();
  opt.dispose();
  assert.equal(tf.memory().numTensors, before);
  w.dispose();
});

test('learningRateAt: cosine from peak to 0, clamped past the end; constant stays at peak', () => {
  assert.equal(learningRateAt('cosine', 0.1, 0, 100), 0.1);
  assert.ok(Math.abs(learningRateAt('cosine', 0.1, 50, 100) - 0.05) < 1e-12);
  assert.ok(Math.abs(learningRateAt('cosine', 0.1, 25, 100) - 0.05 * (1 + Math.SQRT1_2)) < 1e-12);
  assert.ok(Math.abs(learningRateAt('cosine', 0.1, 100, 100)) < 1e-12);
  assert.ok(Math.abs(learningRateAt('cosine', 0.1, 150, 100)) < 1e-12);
  let prev = Infinity;
  for (let s = 0; s <= 100; s++) {
    const lr = learningRateAt('cosine', 0.1, s, 100);
    assert.ok(lr <= prev);
    prev = lr;
  }
  assert.equal(learningRateAt('constant', 0.1, 77, 100), 0.1);
});

// --- checkpoints --------------------------------------------------------------------------------

test('encodeCheckpoint / decodeCheckpoint: round trip, and truncated / corrupt bytes are refused', () => {
  const ckpt: TrainingCheckpoint = {
    epoch: 2,
    rngState: [1, 2, 3, 4294967295],
    arrays: {
      model: [
        { shape: [2, 3], values: Float32Array.from([1, 2, 3, 4, 5, -6.5]) },
        { shape: [1], values: Float32Array.from([Math.PI]) },
      ],
      'optimizer:model': [{ shape: [3], values: Float32Array.from([0.1, 0.2, 1e-30]) }],
      empty: [{ shape: [0], values: new Float32Array(0) }],
    },
    extra: { history: [{ epoch: 1, loss: 0.5 }], best: { epoch: 1, score: 0.75 }, note: 'ünïcode' },
  };
  const bytes = encodeCheckpoint(ckpt);
  assert.equal(Buffer.from(bytes.subarray(0, 8)).toString('latin1'), 'NTMLCKP1');
  // decode from an unaligned copy: the float arrays must not depend on the input's alignment
  const shifted = new Uint8Array(bytes.length + 1);
  shifted.set(bytes, 1);
  const back = decodeCheckpoint(shifted.subarray(1), 'mem');
  assert.equal(back.epoch, 2);
  assert.deepEqual(back.rngState, ckpt.rngState);
  assert.deepEqual(back.extra, ckpt.extra);
  assert.deepEqual(Object.keys(back.arrays), Object.keys(ckpt.arrays));
  for (const [g, arrays] of Object.entries(ckpt.arrays)) {
    arrays.forEach((a, i) => {
      assert.deepEqual(back.arrays[g][i].shape, a.shape);
      assert.deepEqual(Array.from(back.arrays[g][i].values), Array.from(a.values));
    });
  }
  const fails = (b: Uint8Array, re: RegExp) =>
    assert.throws(() => decodeCheckpoint(b, 'ckpt-7'), (e: Error) => e instanceof CheckpointFormatError && e.message.startsWith('ckpt-7: ') && re.test(e.message));
  fails(bytes.subarray(0, bytes.length - 4), new RegExp(`expected ${bytes.length} bytes, got ${bytes.length - 4}`));
  fails(Uint8Array.from([...bytes, 0, 0, 0, 0]), /expected .* bytes/);
  fails(bytes.subarray(0, 30), /truncated header/);
  fails(bytes.subarray(0, 5), /bad magic/);
  const bad = Uint8Array.from(bytes);
  bad[3] ^= 0xff;
  fails(bad, /bad magic/);
  const badHeader = Uint8Array.from(bytes);
  badHeader[12] = 0x7d; // the header's opening brace
  fails(badHeader, /header is not valid JSON/);
});

test('setModelWeights: a checkpoint of another model is refused with what differs', () => {
  const c = createClassifier('tinyCnn', shape8, 4, 1);
  const w = modelWeights(c.model);
  assert.throws(() => setModelWeights(c.model, w.slice(1), 'ckpt'), (e: Error) => e instanceof CheckpointFormatError && /holds \d+ weight arrays, the model has \d+/.test(e.message));
  const other = createClassifier('tinyCnn', shape8, 5, 1);
  assert.throws(() => setModelWeights(c.model, modelWeights(other.model), 'ckpt'), (e: Error) => e instanceof CheckpointFormatError && /logits\/kernel has shape/.test(e.message));
  c.model.dispose();
  other.model.dispose();
});

// --- losses ---------------------------------------------------------------------------------------

function logSoftmaxRow(z: number[]): number[] {
  const m = Math.max(...z);
  const lse = m + Math.log(z.reduce((s, v) => s + Math.exp(v - m), 0));
  return z.map((v) => v - lse);
}

test('losses: CE, soft CE, KL (with T^2) and complementary loss match hand computations', () => {
  const Z = [
    [1, 2, 3],
    [0.5, -1, 0],
  ];
  const logits = tf.tensor2d(Z);
  const ls = Z.map(logSoftmaxRow);
  const near = (t: TF.Scalar, want: number) => {
    const got = t.dataSync()[0];
    t.dispose();
    assert.ok(Math.abs(got - want) < 1e-5, `${got} vs ${want}`);
  };
  const labels = tf.tensor1d([2, 1], 'int32');
  near(crossEntropy(logits, labels), -(ls[0][2] + ls[1][1]) / 2);
  const Q = [
    [0.2, 0.8, 0],
    [0, 0.5, 0.5],
  ];
  const q = tf.tensor2d(Q);
  const sce = -Q.reduce((s, row, i) => s + row.reduce((a, v, j) => a + v * ls[i][j], 0), 0) / 2;
  near(softCrossEntropy(logits, q), sce);
  // KL = soft CE - entropy of the target (0 log 0 = 0)
  const ent = -Q.reduce((s, row) => s + row.reduce((a, v) => a + (v > 0 ? v * Math.log(v) : 0), 0), 0) / 2;
  near(klToTarget(logits, q), sce - ent);
  const T = 2;
  const lsT = Z.map((r) => logSoftmaxRow(r.map((v) => v / T)));
  const klT = Q.reduce((s, row, i) => s + row.reduce((a, v, j) => a + (v > 0 ? v * (Math.log(v) - lsT[i][j]) : 0), 0), 0) / 2;
  near(klToTarget(logits, q, T), T * T * klT);
  // KL of a distribution to itself is 0
  near(klToTarget(logits, tf.softmax(logits) as TF.Tensor2D), 0);
  const py = [Math.exp(ls[0][2]), Math.exp(ls[1][1])];
  near(complementaryLoss(logits, labels), -(Math.log(1 - py[0]) + Math.log(1 - py[1])) / 2);
  // complementary loss stays finite when the model is certain of the forbidden class
  const certain = tf.tensor2d([[100, 0, 0]]);
  const cl = complementaryLoss(certain, tf.tensor1d([0], 'int32'));
  assert.ok(Number.isFinite(cl.dataSync()[0]) && cl.dataSync()[0] > 10);
  tf.dispose([logits, labels, q, certain, cl]);
});

// --- the epoch loop -----------------------------------------------------------------------------

test('runEpochs: batches, trailing single sample folded in, loss averaged by size, cosine per step', async () => {
  const ds = data(33);
  const c = createClassifier('tinyCnn', shape8, 4, 1);
  const sizes: number[] = [];
  const lrs: number[] = [];
  const seen: number[] = [];
  const result = await runEpochs({
    data: ds,
    epochs: 2,
    batchSize: 16,
    peakLearningRate: 0.2,
    schedule: 'cosine',
    augment: noAugmentation,
    seed: 3,
    models: { m: c },
    optimizers: {},
    step: (x, idx, lr) => {
      assert.equal(x.shape[0], idx.length);
      sizes.push(idx.length);
      lrs.push(lr);
      seen.push(...idx);
      return tf.scalar(idx.length);
    },
  });
  assert.deepEqual(sizes, [16, 17, 16, 17]);
  // each epoch sees every record exactly once
  assert.deepEqual(seen.slice(0, 33).sort((a, b) => a - b), Array.from({ length: 33 }, (_, i) => i));
  assert.deepEqual(seen.slice(33).sort((a, b) => a - b), Array.from({ length: 33 }, (_, i) => i));
  assert.notDeepEqual(seen.slice(0, 33), seen.slice(33), 'reshuffled every epoch');
  lrs.forEach((lr, s) => assert.ok(Math.abs(lr - learningRateAt('cosine', 0.2, s, 4)) < 1e-12));
  assert.equal(result.history.length, 2);
  assert.ok(Math.abs(result.history[0].loss - (16 * 16 + 17 * 17) / 33) < 1e-4);
  assert.equal(result.history[0].images, 33);
  assert.equal(result.selectedEpoch, 2);
  await assert.rejects(
    runEpochs({ data: ds, indices: new Int32Array(0), epochs: 1, batchSize: 4, peakLearningRate: 0.1, schedule: 'constant', augment: noAugmentation, seed: 1, models: { m: c }, optimizers: {}, step: () => tf.scalar(0) }),
    /empty data set/,
  );
  c.model.dispose();
});

async function train(c: Classifier, ds: ImageDataset, seed: number, extra: Partial<Parameters<typeof trainClassifier>[0]> = {}) {
  return trainClassifier({ classifier: c, data: ds, recipe: recipe(), seed, ...extra });
}

test('trainClassifier: same seed -> bit-identical weights (BN statistics included); another seed -> different', async () => {
  const ds = data(64);
  const runs: Float32Array[][] = [];
  const losses: number[][] = [];
  for (const seed of [5, 5, 6]) {
    const c = createClassifier('tinyCnn', shape8, 4, 11);
    const r = await train(c, ds, seed, { recipe: recipe({ epochs: 2 }) });
    losses.push(r.history.map((h) => h.loss));
    runs.push(weightsOf(c.model));
    c.model.dispose();
  }
  assert.ok(sameArrays(runs[0], runs[1]));
  assert.deepEqual(losses[0], losses[1]);
  assert.ok(!sameArrays(runs[0], runs[2]));
  // the moving statistics moved away from their initial values (BN trains in 'train' mode)
  const c = createClassifier('tinyCnn', shape8, 4, 11);
  const initial = weightsOf(c.model);
  const movingIdx = c.model.weights.map((w, i) => (w.originalName.includes('moving') ? i : -1)).filter((i) => i >= 0);
  assert.ok(movingIdx.length === 6);
  for (const i of movingIdx) assert.ok(!sameArrays([initial[i]], [runs[0][i]]), c.model.weights[i].originalName);
  c.model.dispose();
});

test('trainClassifier: batchNorm "frozen" leaves the BN moving statistics untouched', async () => {
  const ds = data(32);
  const c = createClassifier('tinyCnn', shape8, 4, 11);
  const initial = weightsOf(c.model);
  await train(c, ds, 1, { recipe: recipe({ epochs: 1, batchNorm: 'frozen' }) });
  const after = weightsOf(c.model);
  c.model.weights.forEach((w, i) => {
    const same = sameArrays([initial[i]], [after[i]]);
    if (w.originalName.includes('moving')) assert.ok(same, `${w.originalName} unchanged`);
    else assert.ok(!same, `${w.originalName} trained`);
  });
  c.model.dispose();
});

test('trainClassifier: `indices` trains on exactly those records (same as training on the subset)', async () => {
  const ds = data(60);
  const idx = Int32Array.from({ length: 30 }, (_, i) => 2 * i + 1);
  const a = createClassifier('tinyCnn', shape8, 4, 2);
  const b = createClassifier('tinyCnn', shape8, 4, 2);
  await train(a, ds, 9, { indices: idx, recipe: recipe({ epochs: 1 }) });
  await train(b, subsetDataset(ds, idx), 9, { recipe: recipe({ epochs: 1 }) });
  assert.ok(sameArrays(weightsOf(a.model), weightsOf(b.model)));
  a.model.dispose();
  b.model.dispose();
});

test('trainClassifier: exact resume from an epoch-1 checkpoint (encoded or in memory) reproduces weights and history', async () => {
  const ds = data(48);
  const heldOut = data(12, 2);
  const selectOf = (c: Classifier) => heldOutAccuracy(c, heldOut);

  const full = createClassifier('tinyCnn', shape8, 4, 4);
  const fullResult = await train(full, ds, 21, { select: selectOf(full) });
  const fullWeights = weightsOf(full.model);

  // an identical run that keeps its epoch-1 checkpoint, both as bytes and as the object itself
  const first = createClassifier('tinyCnn', shape8, 4, 4);
  let bytes: Uint8Array | undefined;
  let object: TrainingCheckpoint | undefined;
  const firstResult = await train(first, ds, 21, {
    select: selectOf(first),
    hooks: {
      onEpochEnd: (record, snapshot) => {
        if (record.epoch === 1) {
          object = snapshot();
          bytes = encodeCheckpoint(snapshot());
        }
      },
    },
  });
  assert.ok(sameArrays(weightsOf(first.model), fullWeights), 'taking snapshots does not change training');
  assert.equal(object!.epoch, 1);
  assert.equal((object!.extra.history as unknown[]).length, 1, 'the snapshot holds the history up to its own epoch');

  for (const ckpt of [decodeCheckpoint(bytes!, 'ckpt'), object!]) {
    // a fresh model with other initial weights: everything comes from the checkpoint
    const resumed = createClassifier('tinyCnn', shape8, 4, 99);
    const r = await train(resumed, ds, 21, { select: selectOf(resumed), resume: ckpt });
    assert.equal(r.resumedFromEpoch, 1);
    assert.ok(sameArrays(weightsOf(resumed.model), fullWeights), 'resumed weights are bit-identical');
    assert.deepEqual(timeless(r.history), timeless(fullResult.history));
    assert.equal(r.selectedEpoch, fullResult.selectedEpoch);
    assert.equal(r.selectedScore, fullResult.selectedScore);
    resumed.model.dispose();
  }
  assert.deepEqual(timeless(firstResult.history), timeless(fullResult.history));
  full.model.dispose();
  first.model.dispose();
});

test("a finished run's cut final checkpoint: no optimiser state, restores the run's end without training; refused where it would continue training", async () => {
  const ds = data(48);
  const heldOut = data(12, 2);
  const selectOf = (c: Classifier) => heldOutAccuracy(c, heldOut);
  const snapshots: TrainingCheckpoint[] = [];
  const done = createClassifier('tinyCnn', shape8, 4, 4);
  const doneResult = await train(done, ds, 21, { select: selectOf(done), hooks: { onEpochEnd: (_r, snapshot) => void snapshots.push(snapshot()) } });
  const doneWeights = weightsOf(done.model);
  const [afterOne, last] = [snapshots[0], snapshots.at(-1)!];
  assert.equal(last.epoch, 3);

  const cut = decodeCheckpoint(encodeCheckpoint(finishedRunCheckpoint(last)), 'cut');
  assert.equal(cut.finished, true);
  assert.deepEqual(Object.keys(cut.arrays).sort(), ['best:model', 'model'], 'the optimiser buffers are gone; the weights and the best-so-far copy stay');
  assert.ok(Object.keys(last.arrays).includes('optimizer:model'));
  assert.ok(encodeCheckpoint(cut).byteLength < encodeCheckpoint(last).byteLength);
  assert.equal(finishedRunCheckpoint(cut), cut, 'cutting again changes nothing');
  assert.deepEqual(encodeCheckpoint(last), encodeCheckpoint({ ...last, finished: undefined, weightsFrom: undefined }), 'a full checkpoint encodes as before');

  // resumed at its last epoch: no epoch trained, the run's selected weights and history
  const restored = createClassifier('tinyCnn', shape8, 4, 99);
  const r = await train(restored, ds, 21, { select: selectOf(restored), resume: cut });
  assert.equal(r.resumedFromEpoch, 3);
  assert.ok(sameArrays(weightsOf(restored.model), doneWeights));
  assert.deepEqual(timeless(r.history), timeless(doneResult.history));
  assert.equal(r.selectedEpoch, doneResult.selectedEpoch);

  // a longer run of it, or a cut of an unfinished epoch: refused, never continued with zeroed buffers
  const again = createClassifier('tinyCnn', shape8, 4, 99);
  const refused = (e: Error) => e instanceof CheckpointFormatError && /the epoch (3|1) checkpoint is a finished run's final checkpoint \(no optimiser state\).*cannot continue training to epoch (4|3)/.test(e.message);
  await assert.rejects(train(again, ds, 21, { recipe: recipe({ epochs: 4 }), resume: cut }), refused);
  await assert.rejects(train(again, ds, 21, { resume: finishedRunCheckpoint(afterOne) }), refused);
  // its weights referenced elsewhere and not loaded: named, not trained from the fresh model
  const { model: _model, ...rest } = cut.arrays;
  const referencing = { ...cut, arrays: rest, weightsFrom: { model: { uri: 's3://b/p/artifacts/x', sha256: 'a'.repeat(64), bytes: 1 } } };
  assert.deepEqual(decodeCheckpoint(encodeCheckpoint(referencing), 'ref').weightsFrom, referencing.weightsFrom);
  await assert.rejects(train(again, ds, 21, { resume: referencing }), (e: Error) => e instanceof CheckpointFormatError && /no weights of model "model" \(they are the stored model a{64}/.test(e.message));
  for (const c of [done, restored, again]) c.model.dispose();
});

test('trainClassifier: stopAfterEpoch replays the first epochs of the full schedule exactly (a refit)', async () => {
  const ds = data(48);
  const full = createClassifier('tinyCnn', shape8, 4, 4);
  let afterTwo: ArrayLike<number>[] | undefined;
  const fullResult = await train(full, ds, 21, {
    hooks: { onEpochEnd: (record, snapshot) => void (record.epoch === 2 && (afterTwo = snapshot().arrays.model.map((a) => a.values))) },
  });
  const stopped = createClassifier('tinyCnn', shape8, 4, 4);
  const r = await train(stopped, ds, 21, { stopAfterEpoch: 2 });
  assert.equal(r.history.length, 2);
  assert.equal(r.selectedEpoch, 2);
  // the same learning rates as the full run's first two epochs: the schedule is not compressed
  assert.deepEqual(timeless(r.history), timeless(fullResult.history.slice(0, 2)));
  assert.ok(r.history[1].learningRate > fullResult.history[2].learningRate);
  assert.ok(sameArrays(weightsOf(stopped.model), afterTwo!), 'bit-identical to the full run after epoch 2');
  // training for 0 epochs leaves the weights as they were
  const untouched = createClassifier('tinyCnn', shape8, 4, 4);
  const before = weightsOf(untouched.model);
  const none = await train(untouched, ds, 21, { stopAfterEpoch: 0 });
  assert.equal(none.history.length, 0);
  assert.ok(sameArrays(weightsOf(untouched.model), before));
  for (const c of [full, stopped, untouched]) c.model.dispose();
});

test('trainClassifier: selection restores the best held-out epoch (or the start when allowed and best)', async () => {
  const ds = data(32);
  for (const { scores, includeStart, want } of [
    { scores: [0.2, 0.9, 0.5, 0.9], includeStart: false, want: 2 },
    { scores: [0.95, 0.2, 0.9, 0.3], includeStart: true, want: 0 },
  ]) {
    const c = createClassifier('tinyCnn', shape8, 4, 3);
    const perEpoch: Float32Array[][] = [weightsOf(c.model)];
    const queue = includeStart ? scores.slice() : scores.slice(0, 3);
    const r = await train(c, ds, 2, {
      select: async () => queue.shift()!,
      selectIncludesStart: includeStart,
      hooks: { onEpochEnd: () => void perEpoch.push(weightsOf(c.model)) },
    });
    assert.equal(queue.length, 0, 'score asked once per epoch (+ once for the start)');
    assert.equal(r.selectedEpoch, want);
    assert.equal(r.selectedScore, includeStart ? 0.95 : 0.9);
    assert.ok(sameArrays(weightsOf(c.model), perEpoch[want]), `weights of epoch ${want}`);
    assert.ok(!sameArrays(weightsOf(c.model), perEpoch[3]));
    assert.deepEqual(r.history.map((h) => h.score), includeStart ? scores.slice(1) : scores.slice(0, 3));
    c.model.dispose();
  }
});

test('trainClassifier: an aborted signal stops training with TrainingCancelledError and leaks nothing', async () => {
  const ds = data(64);
  const c = createClassifier('tinyCnn', shape8, 4, 3);
  const before = tf.memory().numTensors;
  const ac = new AbortController();
  const batches: string[] = [];
  await assert.rejects(
    train(c, ds, 1, {
      hooks: {
        signal: ac.signal,
        onBatch: (e, b) => {
          batches.push(`${e}:${b}`);
          if (e === 1 && b === 0) ac.abort();
        },
      },
    }),
    (e: Error) => e instanceof TrainingCancelledError,
  );
  assert.deepEqual(batches, ['0:0', '0:1', '0:2', '0:3', '1:0']);
  assert.equal(tf.memory().numTensors, before);
  // already aborted: not a single step
  const w = weightsOf(c.model);
  await assert.rejects(train(c, ds, 1, { hooks: { signal: AbortSignal.abort() } }), TrainingCancelledError);
  assert.ok(sameArrays(weightsOf(c.model), w));
  c.model.dispose();
});

test('trainClassifier: every target kind trains, the loss falls, and the tensor count does not grow with epochs', async () => {
  const ds = data(64);
  const k = 4;
  const soft = new Float32Array(64 * k);
  ds.labels.forEach((y, i) => {
    for (let j = 0; j < k; j++) soft[i * k + j] = j === y ? 0.7 : 0.1;
  });
  const notLabels = ds.labels.map((y) => (y + 1) % k);
  const teacher = createClassifier('tinyCnn', shape8, 4, 8);
  const kinds = [
    undefined,
    { kind: 'soft' as const, probs: soft },
    { kind: 'negative' as const, labels: notLabels },
    { kind: 'distill' as const, teacher, temperature: 2 },
  ];
  const teacherWeights = weightsOf(teacher.model);
  for (const targets of kinds) {
    const counts: number[] = [];
    let history: EpochRecord[] = [];
    for (const epochs of [1, 3]) {
      const c = createClassifier('tinyCnn', shape8, 4, 1);
      const before = tf.memory().numTensors;
      history = (await train(c, ds, 3, { targets, recipe: recipe({ epochs, learningRate: 0.02, augment: { padding: 0, flip: false } }) })).history;
      counts.push(tf.memory().numTensors - before);
      c.model.dispose();
    }
    const name = targets?.kind ?? 'hard';
    assert.deepEqual(counts, [0, 0], `${name}: no tensors left behind`);
    assert.ok(history.every((h) => Number.isFinite(h.loss)), name);
    assert.ok(history[2].loss < history[0].loss, `${name}: loss ${history.map((h) => h.loss.toFixed(4))}`);
  }
  assert.ok(sameArrays(weightsOf(teacher.model), teacherWeights), 'a distillation teacher is never updated');
  teacher.model.dispose();
});
