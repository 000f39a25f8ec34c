import { test } from 'node:test';
import assert from 'node:assert/strict';

import { generateSyntheticDataset } from '../../core/data/synthetic';
import { drawCleanBudget } from '../../core/data/splits';
import type { ImageDataset } from '../../core/data/dataset';
import { controlsTraining, getAttack, parseAttackConfig, validateAttackAgainst } from '../../core/attacks/registry';
import { poisonResultFromMeta, poisonResultToMeta } from '../../core/attacks/poisonMeta';
import {
  bicubicUpsample,
  cubicWeights,
  gridSampleInto,
  wanet,
  wanetControlPoints,
  wanetGrid,
} from '../../core/attacks/wanet';
import { buildBackdoorTestSet } from '../../core/attacks/testSet';
import { allIndices, expectFieldError, poisonedBySeed } from '../support/attackFixtures';

const H = 13;
const W = 13;
const per = H * W * 3;
const train = generateSyntheticDataset({ size: 200, seed: 5, height: H, width: W });
const allIdx = allIndices(200);

const close = (a: number, b: number, eps = 1e-12) => assert.ok(Math.abs(a - b) <= eps, `${a} != ${b}`);
const image = (ds: ImageDataset, i: number) => ds.images.subarray(i * per, (i + 1) * per);

test('wanet: defaults per attacks.md (training-controlled unless mode poisonOnly), registered as dirty-label', () => {
  assert.deepEqual(parseAttackConfig({ name: 'wanet' }), {
    name: 'wanet',
    target: 0,
    rate: 0.1,
    labelMap: 'allToOne',
    k: 4,
    s: 0.5,
    crossRatio: 2,
    mode: 'trainingControlled',
    augment: { padding: 5, rotation: 10 },
  });
  assert.equal(getAttack('wanet'), wanet);
  assert.equal(wanet.kind, 'dirty-label');
  assert.equal(controlsTraining(parseAttackConfig({ name: 'wanet' })), true, 'the default: the attacker runs training');
  assert.equal(controlsTraining(parseAttackConfig({ name: 'wanet', mode: 'poisonOnly' })), false);
  assert.equal(controlsTraining(parseAttackConfig({ name: 'badnets' })), false);
  assert.equal(controlsTraining(parseAttackConfig({ name: 'inputaware' })), true);
});

test('wanet: config errors name the field', () => {
  expectFieldError(() => parseAttackConfig({ name: 'wanet', k: 1 }), 'k');
  expectFieldError(() => parseAttackConfig({ name: 'wanet', k: 2.5 }), 'k');
  expectFieldError(() => parseAttackConfig({ name: 'wanet', s: -0.1 }), 's');
  expectFieldError(() => parseAttackConfig({ name: 'wanet', crossRatio: -1 }), 'crossRatio');
  expectFieldError(() => parseAttackConfig({ name: 'wanet', gridSeed: 1.5 }), 'gridSeed');
  expectFieldError(() => parseAttackConfig({ name: 'wanet', cross_ratio: 2 }), 'cross_ratio');
  expectFieldError(() => parseAttackConfig({ name: 'wanet', mode: 'poisonedOnly' }), 'mode');
  expectFieldError(() => parseAttackConfig({ name: 'wanet', augment: { rotation: -1 } }), 'augment.rotation');
  expectFieldError(() => parseAttackConfig({ name: 'wanet', augment: { padding: 2.5 } }), 'augment.padding');
  expectFieldError(() => parseAttackConfig({ name: 'wanet', augment: { crop: 5 } }), 'augment', /crop/);
  expectFieldError(() => validateAttackAgainst(parseAttackConfig({ name: 'wanet', k: 14 }), train), 'k', /13x13/);
  // poisoned 50% + noise set 2 x 50%: more than the data set
  expectFieldError(() => wanet.poisonTrainingSet(train, allIdx, parseAttackConfig({ name: 'wanet', rate: 0.5 }), 1), 'crossRatio', /200 noise-set images .* only 100/);
  expectFieldError(
    () => wanet.applyTrigger(train, parseAttackConfig({ name: 'wanet' }), 1, { controlPoints: [1, 2, 3] }),
    'triggerParameters.controlPoints',
    /32 finite numbers/,
  );
});

test('wanet: bicubic weights (a = -0.75) and upsampling with align_corners against hand computations', () => {
  assert.deepEqual(cubicWeights(0), [0, 1, 0, 0]);
  const w = cubicWeights(0.5);
  [-0.09375, 0.59375, 0.59375, -0.09375].forEach((v, m) => close(w[m], v));
  for (const t of [0.1, 0.37, 0.9]) close(cubicWeights(t).reduce((s, v) => s + v, 0), 1, 1e-12);
  // 1 x 4 -> 1 x 13: src = o * 3/12; o = 2 -> src 0.5, neighbours (clamped) [0, 0, 1, 2]
  const row = bicubicUpsample(Float64Array.from([0, 1, 4, 9]), 1, 1, 4, 1, 13);
  close(row[2], -0.09375 * 0 + 0.59375 * 0 + 0.59375 * 1 - 0.09375 * 4);
  close(row[6], -0.09375 * 0 + 0.59375 * 1 + 0.59375 * 4 - 0.09375 * 9);
  // every control point is hit exactly where src is an integer (o = 0, 4, 8, 12 for 4 -> 13)
  [0, 1, 4, 9].forEach((v, m) => close(row[4 * m], v));
  // 2 planes of 4x4 -> 13x13: corners (and all control points) reproduced, planes independent
  const cp = wanetControlPoints(4, 7);
  const up = bicubicUpsample(cp, 2, 4, 4, 13, 13);
  for (let p = 0; p < 2; p++) {
    for (let r = 0; r < 4; r++) for (let c = 0; c < 4; c++) close(up[p * 169 + 4 * r * 13 + 4 * c], cp[p * 16 + r * 4 + c]);
  }
  // 4 -> 32 (CIFAR size): only the corners are control points
  const big = bicubicUpsample(cp, 2, 4, 4, 32, 32);
  close(big[0], cp[0]);
  close(big[31], cp[3]);
  close(big[31 * 32], cp[12]);
  close(big[32 * 32 - 1], cp[15]);
  close(big[1024 + 1023], cp[31]);
});

test('wanet: control points U(-1,1) normalised to mean |ins| = 1, seeded', () => {
  const cp = wanetControlPoints(4, 1);
  assert.equal(cp.length, 32);
  close(cp.reduce((s, v) => s + Math.abs(v), 0) / 32, 1, 1e-12);
  assert.deepEqual(wanetControlPoints(4, 1), cp);
  assert.notDeepEqual(wanetControlPoints(4, 2), cp);
});

test('wanet: with s = 0 the warp is the identity; a one-pixel grid shift moves the image by one pixel', () => {
  const cfg = parseAttackConfig({ name: 'wanet', s: 0 });
  const out = wanet.applyTrigger(train, cfg, 3);
  assert.deepEqual(out.images, train.images);
  // grid = identity shifted by one pixel in x (2/(W-1) in normalised units), clamped at the border
  const grid = wanetGrid(wanetControlPoints(4, 1), 4, 0, train);
  for (let p = 0; p < H * W; p++) grid[p * 2] = Math.min(1, grid[p * 2] + 2 / (W - 1));
  const dst = new Uint8Array(per);
  gridSampleInto(train.images, dst, 0, train, grid);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      for (let c = 0; c < 3; c++) assert.equal(dst[(y * W + x) * 3 + c], train.images[(y * W + Math.min(W - 1, x + 1)) * 3 + c]);
    }
  }
  // half a pixel in y: the rounded mean of the two rows
  const half = wanetGrid(wanetControlPoints(4, 1), 4, 0, train);
  for (let p = 0; p < H * W; p++) half[p * 2 + 1] = Math.min(1, half[p * 2 + 1] + 1 / (H - 1));
  gridSampleInto(train.images, dst, 0, train, half);
  const at = (y: number, x: number) => train.images[(y * W + x) * 3];
  const mean = (at(2, 5) + at(3, 5)) / 2;
  assert.ok([Math.floor(mean), Math.ceil(mean)].includes(dst[(2 * W + 5) * 3]), `${dst[(2 * W + 5) * 3]} vs ${mean}`);
  assert.equal(dst[((H - 1) * W + 5) * 3], at(H - 1, 5), 'clamped at the border');
});

test('wanet: grid = clamp(identity + s * upsampled noise / size), corners at the control points; saturated pixels stay 255', () => {
  const cp = wanetControlPoints(4, 9);
  const s = 0.5;
  const grid = wanetGrid(cp, 4, s, { height: H, width: W });
  const clamp = (v: number) => Math.max(-1, Math.min(1, v));
  close(grid[0], clamp(-1 + (s * cp[0]) / W));
  close(grid[1], clamp(-1 + (s * cp[16]) / H));
  const last = (H * W - 1) * 2;
  close(grid[last], clamp(1 + (s * cp[15]) / W));
  close(grid[last + 1], clamp(1 + (s * cp[31]) / H));
  assert.ok(grid.every((v) => v >= -1 && v <= 1));
  // bilinear weights sum to 1: an all-255 image warps to all-255 (no 254, no wrap to 0)
  const white: ImageDataset = { ...train, images: new Uint8Array(train.images.length).fill(255) };
  const strong = wanet.applyTrigger(white, parseAttackConfig({ name: 'wanet', s: 8 }), 1);
  assert.ok(strong.images.every((v) => v === 255));
});

test('wanet: poisoned set -> target, disjoint noise set keeps labels, everything else byte-identical', () => {
  const { restIndices } = drawCleanBudget(train, 20, 1);
  const cfg = parseAttackConfig({ name: 'wanet', rate: 0.1, target: 2 });
  const before = Uint8Array.from(train.images);
  const res = wanet.poisonTrainingSet(train, restIndices, cfg, 4);
  assert.deepEqual(train.images, before, 'input not modified');
  assert.equal(res.poisonedIndices.length, 20);
  assert.equal(res.record.poisonedCount, 20);
  const cross = res.crossIndices!;
  assert.equal(cross.length, 40, 'crossRatio 2 x 20');
  assert.equal(res.record.triggerParameters.crossCount, 40);
  for (let k = 1; k < cross.length; k++) assert.ok(cross[k - 1] < cross[k], 'sorted');
  const eligible = new Set(restIndices);
  const poisoned = new Set(res.poisonedIndices);
  const crossSet = new Set(cross);
  assert.ok(cross.every((i) => !poisoned.has(i)), 'disjoint');
  assert.ok([...poisoned, ...crossSet].every((i) => eligible.has(i)), 'eligible only');
  const warped = wanet.applyTrigger(train, cfg, 4, res.record.triggerParameters);
  let crossChanged = 0;
  for (let i = 0; i < 200; i++) {
    const b = image(res.dataset, i);
    if (poisoned.has(i)) {
      assert.equal(res.dataset.labels[i], 2);
      assert.deepEqual(b, image(warped, i), `poisoned ${i} = the test-time warp`);
    } else if (crossSet.has(i)) {
      assert.equal(res.dataset.labels[i], train.labels[i], 'noise set keeps its label');
      if (!b.every((v, p) => v === warped.images[i * per + p])) crossChanged++;
    } else {
      assert.deepEqual(b, image(train, i), `clean image ${i} byte-identical`);
      assert.equal(res.dataset.labels[i], train.labels[i]);
    }
  }
  assert.ok(crossChanged >= 38, `noise-set images differ from the plain warp (${crossChanged}/40)`);
  res.poisonedIndices.forEach((i, k) => assert.equal(res.originalLabels[k], train.labels[i]));
  assert.ok(new Set(res.originalLabels).size >= 5, 'dirty-label: drawn from every class');
  // the warp changes the poisoned images
  const changed = res.poisonedIndices.filter((i) => !image(res.dataset, i).every((v, p) => v === train.images[i * per + p])).length;
  assert.equal(changed, 20);
  // the record carries the control points; through the codec meta, the test set sees the same warp
  const tp = res.record.triggerParameters;
  assert.equal((tp.controlPoints as number[]).length, 32);
  const back = poisonResultFromMeta(res.dataset, JSON.parse(JSON.stringify(poisonResultToMeta(res))), 'test');
  assert.deepEqual(back.crossIndices, cross);
  const bd = buildBackdoorTestSet(train, back.record.config, 12345, back.record.triggerParameters);
  bd.sourceIndices.forEach((src, k) => {
    if (poisoned.has(src)) assert.deepEqual(bd.images.images.subarray(k * per, (k + 1) * per), image(res.dataset, src));
  });
});

test('wanet: deterministic per seed; the seed changes indices and warp; gridSeed fixes the warp', () => {
  const cfg = parseAttackConfig({ name: 'wanet' });
  const { a, c } = poisonedBySeed((seed) => wanet.poisonTrainingSet(train, allIdx, cfg, seed));
  assert.deepEqual(a.crossIndices, wanet.poisonTrainingSet(train, allIdx, cfg, 1).crossIndices);
  assert.notDeepEqual(a.crossIndices, c.crossIndices);
  assert.notDeepEqual(a.record.triggerParameters.controlPoints, c.record.triggerParameters.controlPoints);
  assert.notDeepEqual(wanet.applyTrigger(train, cfg, 1).images, wanet.applyTrigger(train, cfg, 2).images);
  // without recorded parameters the warp is re-derived from the seed: same as recorded
  assert.deepEqual(wanet.applyTrigger(train, cfg, 1).images, wanet.applyTrigger(train, cfg, 1, a.record.triggerParameters).images);
  const fixed = parseAttackConfig({ name: 'wanet', gridSeed: 77 });
  assert.deepEqual(wanet.applyTrigger(train, fixed, 1).images, wanet.applyTrigger(train, fixed, 2).images);
  assert.equal(wanet.poisonTrainingSet(train, allIdx, fixed, 3).record.triggerParameters.gridSeed, 77);
  // crossRatio 0: no noise set; all-to-all relabels y -> y+1
  const all = wanet.poisonTrainingSet(train, allIdx, parseAttackConfig({ name: 'wanet', labelMap: 'allToAll', crossRatio: 0, rate: 0.15 }), 3);
  assert.equal(all.poisonedIndices.length, 30);
  assert.equal(all.crossIndices!.length, 0);
  all.poisonedIndices.forEach((i, k) => assert.equal(all.dataset.labels[i], (all.originalLabels[k] + 1) % 10));
});
