/**
 * WaNet's training-controlled mode (attacks.md): each batch freshly poisoned at the rate, fresh
 * noise-mode samples that keep their true labels, the warping grid fixed per attack seed, WaNet's
 * own augmentation after poisoning; the run materialises the poisoned training set for the
 * defenses, checkpoints exactly, and prepareData hands the training to the attacker.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as TF from '@tensorflow/tfjs-node';

import { generateSyntheticDataset } from '../../core/data/synthetic';
import type { ImageDataset } from '../../core/data/dataset';
import { Rng } from '../../core/rng';
import { parseAttackConfig } from '../../core/attacks/registry';
import { wanet, wanetControlPoints, wanetControlSeed, wanetGrid } from '../../core/attacks/wanet';
import { assembleWanetBatch, noWanetAugment, wanetBatchCounts, type WanetAugment } from '../../core/attacks/wanetBatch';
import { trainWanetBackdoor, wanetAugment } from '../../core/attacks/wanetTraining';
import { createClassifier } from '../../core/models/layersFormat';
import { disposeClassifier } from '../../core/models/classifier';
import { TrainRecipe } from '../../core/train/recipe';
import { decodeCheckpoint, encodeCheckpoint, type TrainingCheckpoint } from '../../core/train/checkpoint';
import { prepareData } from '../../core/experiment/prepareData';
import { parsePurifyConfig } from '../../schemas/purify';

const H = 13;
const per = H * H * 3;
const train = generateSyntheticDataset({ size: 400, seed: 5, height: H, width: H });
const cfg = parseAttackConfig({ name: 'wanet', target: 2 });
const grid = wanetGrid(wanetControlPoints(cfg.k, wanetControlSeed(cfg, 7)), cfg.k, cfg.s, train);
const targetOf = Int32Array.from(train.labels, () => 2);

function batch(indices: number[], eligible: Uint8Array, augment: WanetAugment, rng: Rng, range: '0-255' | '0-1' = '0-255') {
  const out = new Float32Array(indices.length * per);
  const b = assembleWanetBatch({ train, indices, eligible, rate: cfg.rate, crossRatio: cfg.crossRatio, grid, targetOf, augment, rng, range, out });
  return { ...b, out };
}
const row = (out: Float32Array, k: number) => out.subarray(k * per, (k + 1) * per);
const sameImage = (a: ArrayLike<number>, b: ArrayLike<number>, eps: number) => {
  for (let i = 0; i < a.length; i++) if (Math.abs(a[i] - b[i]) > eps) return false;
  return true;
};

test('wanet batch counts: floor(rate * bs) backdoor, floor(crossRatio * that) noise mode, within the eligible positions', () => {
  assert.deepEqual(wanetBatchCounts(0.1, 2, 128, 128), { backdoor: 12, cross: 24 });
  assert.deepEqual(wanetBatchCounts(0.1, 2, 32, 32), { backdoor: 3, cross: 6 });
  assert.deepEqual(wanetBatchCounts(0.57, 0, 100, 100), { backdoor: 57, cross: 0 }, '0.57 * 100 is 57, not 56.99...');
  assert.deepEqual(wanetBatchCounts(0.1, 2, 128, 20), { backdoor: 12, cross: 8 }, 'the noise mode takes what eligible positions remain');
  assert.deepEqual(wanetBatchCounts(0.1, 2, 128, 5), { backdoor: 5, cross: 0 });
});

test('wanet batch: backdoor samples get the fixed warp and the target, noise-mode samples keep their true labels, the rest is untouched', () => {
  const indices = Array.from({ length: 32 }, (_, k) => 10 * k + 3);
  // every third index is inside the clean budget: never modified
  const eligible = new Uint8Array(train.labels.length).fill(1);
  indices.forEach((i, k) => k % 3 === 0 && (eligible[i] = 0));
  const b = batch(indices, eligible, noWanetAugment, new Rng(1));
  assert.equal(b.backdoor.length, 3);
  assert.equal(b.cross.length, 6);
  const eligiblePositions = indices.map((i, k) => (eligible[i] ? k : -1)).filter((k) => k >= 0);
  assert.deepEqual(b.backdoor, eligiblePositions.slice(0, 3), 'the first eligible positions of the (shuffled) batch');
  assert.deepEqual(b.cross, eligiblePositions.slice(3, 9));
  // the test-time trigger: the same grid, rounded once to uint8
  const warped = wanet.applyTrigger(train, cfg, 7);
  indices.forEach((i, k) => {
    const img = row(b.out, k);
    if (b.backdoor.includes(k)) {
      assert.equal(b.labels[k], 2, 'backdoor -> target');
      assert.ok(sameImage(img, warped.images.subarray(i * per, (i + 1) * per), 0.5 + 1e-4), `backdoor ${k} = the test-time warp before rounding`);
    } else if (b.cross.includes(k)) {
      assert.equal(b.labels[k], train.labels[i], 'noise mode keeps the true label');
      assert.ok(!sameImage(img, warped.images.subarray(i * per, (i + 1) * per), 0.5 + 1e-4), `noise-mode ${k} is not the plain warp`);
      assert.ok(!sameImage(img, train.images.subarray(i * per, (i + 1) * per), 0), `noise-mode ${k} is warped`);
    } else {
      assert.equal(b.labels[k], train.labels[i]);
      assert.deepEqual(Array.from(img), Array.from(train.images.subarray(i * per, (i + 1) * per)), `clean ${k} untouched`);
    }
  });
  // encoded for the model's input range
  const b01 = batch(indices, eligible, noWanetAugment, new Rng(1), '0-1');
  b01.out.forEach((v, p) => assert.ok(Math.abs(v - b.out[p] / 255) < 1e-6));
});

test('wanet batch: every batch is poisoned afresh: the noise is new each time, the warp grid is not', () => {
  const indices = Array.from({ length: 40 }, (_, k) => k);
  const eligible = new Uint8Array(train.labels.length).fill(1);
  const rng = new Rng(3);
  const first = batch(indices, eligible, noWanetAugment, rng);
  const second = batch(indices, eligible, noWanetAugment, rng);
  assert.deepEqual(first.backdoor, second.backdoor);
  for (const k of first.backdoor) assert.deepEqual(row(first.out, k), row(second.out, k), 'the same fixed grid on the same image');
  for (const k of first.cross) assert.ok(!sameImage(row(first.out, k), row(second.out, k), 1e-3), `fresh noise for noise-mode sample ${k}`);
  // another attack seed, another grid
  const other = wanetGrid(wanetControlPoints(cfg.k, wanetControlSeed(cfg, 8)), cfg.k, cfg.s, train);
  assert.ok(other.some((v, p) => v !== grid[p]));
  // gridSeed pins the grid whatever the attack seed
  const pinned = parseAttackConfig({ name: 'wanet', gridSeed: 11 });
  assert.equal(wanetControlSeed(pinned, 1), wanetControlSeed(pinned, 2));
});

test('wanet batch: WaNet\'s augmentation after poisoning: crops are zero-padded shifts, rotations turn about the centre, flips mirror', () => {
  const indices = Array.from({ length: 24 }, (_, k) => k);
  const none = new Uint8Array(train.labels.length); // nothing eligible: clean images only
  const plain = batch(indices, none, noWanetAugment, new Rng(1)).out;
  const shiftOf = (img: Float32Array, src: Float32Array, pad: number) => {
    for (let dy = -pad; dy <= pad; dy++)
      for (let dx = -pad; dx <= pad; dx++) {
        let ok = true;
        for (let y = 0; y < H && ok; y++)
          for (let x = 0; x < H && ok; x++)
            for (let c = 0; c < 3 && ok; c++) {
              const sy = y + dy;
              const sx = x + dx;
              const want = sy < 0 || sy >= H || sx < 0 || sx >= H ? 0 : src[(sy * H + sx) * 3 + c];
              ok = img[(y * H + x) * 3 + c] === want;
            }
        if (ok) return [dy, dx];
      }
    return undefined;
  };
  const rng = new Rng(5);
  let shifted = 0;
  for (let t = 0; t < 4; t++) {
    const out = batch(indices, none, { padding: 2, rotation: 0, flip: false }, rng).out;
    indices.forEach((_, k) => {
      const s = shiftOf(row(out, k), row(plain, k), 2);
      assert.ok(s, `image ${k} is a shift of at most 2 pixels`);
      if (s[0] !== 0 || s[1] !== 0) shifted++;
    });
  }
  assert.ok(shifted > 24, `crops happen (${shifted} of 96 images shifted)`);

  const rot = batch(indices, none, { padding: 0, rotation: 30, flip: false }, new Rng(2)).out;
  const centre = (6 * H + 6) * 3;
  let turned = 0;
  indices.forEach((_, k) => {
    for (let c = 0; c < 3; c++) assert.ok(Math.abs(row(rot, k)[centre + c] - row(plain, k)[centre + c]) < 1e-3, 'the centre pixel stays');
    if (!sameImage(row(rot, k), row(plain, k), 1e-3)) turned++;
  });
  assert.ok(turned > 0 && turned < indices.length, `per image with probability 0.5 once the batch rotates (${turned}/24)`);

  const flipped = batch(indices, none, { padding: 0, rotation: 0, flip: true }, new Rng(4)).out;
  let mirrored = 0;
  indices.forEach((_, k) => {
    const img = row(flipped, k);
    const src = row(plain, k);
    const mirror = Float32Array.from(img, (_v, p) => {
      const y = Math.floor(p / (H * 3));
      const x = Math.floor((p % (H * 3)) / 3);
      return src[(y * H + (H - 1 - x)) * 3 + (p % 3)];
    });
    if (sameImage(img, mirror, 0) && !sameImage(img, src, 0)) mirrored++;
    else assert.ok(sameImage(img, src, 0), `image ${k} is itself or its mirror`);
  });
  assert.ok(mirrored > 3 && mirrored < 21, `about half mirrored (${mirrored}/24)`);
  assert.deepEqual(wanetAugment(parseAttackConfig({ name: 'wanet' }), TrainRecipe.parse({ epochs: 1, learningRate: 0.1, augment: { padding: 4, flip: false } })), {
    padding: 5,
    rotation: 10,
    flip: false,
  });
});

function weightsOf(model: TF.LayersModel): Float32Array[] {
  return model.getWeights().map((t) => Float32Array.from(t.dataSync() as Float32Array));
}

test('wanet training run: per-batch totals at the rate, the materialised set and record, exact resume', { timeout: 300_000 }, async () => {
  const ds: ImageDataset = generateSyntheticDataset({ size: 400, seed: 9, height: 16, width: 16 });
  const all = Int32Array.from({ length: 400 }, (_, i) => i);
  const config = parseAttackConfig({ name: 'wanet', target: 1 });
  const recipe = TrainRecipe.parse({ epochs: 2, batchSize: 32, learningRate: 0.05 });
  const run = async (resume?: TrainingCheckpoint, stopAt?: number) => {
    const classifier = createClassifier('tinyCnn', ds, ds.numClasses, 1);
    let saved: TrainingCheckpoint | undefined;
    const result = await trainWanetBackdoor({
      train: ds,
      eligibleIndices: all,
      config,
      classifier,
      recipe,
      seed: 21,
      resume,
      hooks: {
        onEpochEnd: (record, snapshot) => {
          if (record.epoch === stopAt) saved = decodeCheckpoint(encodeCheckpoint(snapshot()));
        },
      },
    });
    return { result, saved };
  };
  const full = await run(undefined, 1);
  const { result } = full;
  try {
    assert.equal(result.history.length, 2);
    // 12 batches of 32 (3 backdoor, 6 noise mode each) and one of 16 (1 and 2), every epoch
    assert.deepEqual(result.totals, { backdoor: 2 * 37, cross: 2 * 74, clean: 2 * (400 - 111) });
    // what the defenses see: the poison-only draw of this seed, at the same rate, recorded as training-controlled
    const poisonOnly = wanet.poisonTrainingSet(ds, all, { ...config, mode: 'poisonOnly' }, 21);
    assert.equal(result.poisoned.poisonedIndices.length, 40);
    assert.equal(result.poisoned.crossIndices!.length, 80);
    assert.deepEqual(result.poisoned.dataset.images, poisonOnly.dataset.images);
    assert.deepEqual(result.poisoned.dataset.labels, poisonOnly.dataset.labels);
    assert.ok(result.poisoned.poisonedIndices.every((i) => result.poisoned.dataset.labels[i] === 1));
    assert.equal(result.poisoned.record.kind, 'training-controlled');
    assert.equal(poisonOnly.record.kind, 'dirty-label');
    const tp = result.triggerParameters;
    assert.deepEqual(tp.controlPoints, Array.from(wanetControlPoints(4, wanetControlSeed(config, 21))), 'the grid of the attack seed');
    assert.deepEqual(tp.augment, { padding: 5, rotation: 10, flip: true });
    assert.deepEqual(tp.trainedBatches, result.totals);
    assert.deepEqual(result.poisoned.record.triggerParameters, tp);

    // resumed after epoch 1: the same weights and totals as the uninterrupted run
    assert.ok(full.saved);
    const resumed = await run(full.saved);
    try {
      assert.deepEqual(resumed.result.totals, result.totals);
      const a = weightsOf(result.classifier.model);
      const b = weightsOf(resumed.result.classifier.model);
      a.forEach((w, i) => assert.deepEqual(b[i], w, `weight tensor ${i}`));
    } finally {
      disposeClassifier(resumed.result.classifier);
    }
  } finally {
    disposeClassifier(result.classifier);
  }
  await assert.rejects(
    trainWanetBackdoor({ train: ds, eligibleIndices: all, config: { ...config, mode: 'poisonOnly' }, classifier: createClassifier('tinyCnn', ds, ds.numClasses, 1), recipe, seed: 1 }),
    /poisonOnly/,
  );
});

test('prepareData: training-controlled WaNet leaves the data clean for the attacker\'s run; poisonOnly poisons it', async () => {
  const base = { seed: 2, data: { format: 'synthetic', trainSize: 300, testSize: 60, height: 16, width: 16 }, cleanBudget: 30 } as const;
  const tc = await prepareData(parsePurifyConfig({ ...base, attack: { name: 'wanet' } }));
  assert.ok(tc.trainingControlled, 'the attacker runs training');
  assert.equal(tc.poison, undefined);
  assert.equal(tc.backdoorTest, undefined);
  // the attacker's training set is what remains outside the clean reserve; it may modify all of it
  assert.equal(tc.train.labels.length, 300 - tc.summary.cleanReserve!);
  assert.deepEqual(tc.trainingControlled.eligibleIndices, Array.from({ length: tc.train.labels.length }, (_, k) => k));
  const po = await prepareData(parsePurifyConfig({ ...base, attack: { name: 'wanet', mode: 'poisonOnly' } }));
  assert.equal(po.trainingControlled, undefined);
  assert.equal(po.poison!.poisonedCount, Math.round(0.1 * (300 - po.summary.cleanReserve!)));
  assert.equal(po.poison!.kind, 'dirty-label');
});
