import { test } from 'node:test';
import assert from 'node:assert/strict';

import { generateSyntheticDataset } from '../../core/data/synthetic';
import { drawCleanBudget } from '../../core/data/splits';
import type { ImageDataset } from '../../core/data/dataset';
import { getAttack, parseAttackConfig, validateAttackAgainst } from '../../core/attacks/registry';
import { sig, sigSignalRow } from '../../core/attacks/sig';
import { buildBackdoorTestSet } from '../../core/attacks/testSet';
import { allIndices, checkPoisonedCopy, expectFieldError, poisonedBySeed } from '../support/attackFixtures';

const H = 8;
const W = 16;
const per = H * W * 3;
const train = generateSyntheticDataset({ size: 200, seed: 3, height: H, width: W }); // 20 per class
const allIdx = allIndices(200);

function constant(value: number, h: number, w: number, c = 3, n = 1): ImageDataset {
  return {
    name: 'const',
    height: h,
    width: w,
    channels: c,
    numClasses: 10,
    images: new Uint8Array(n * h * w * c).fill(value),
    labels: new Int32Array(n).fill(1),
  };
}

test('sig: defaults per attacks.md, registered as clean-label', () => {
  assert.deepEqual(parseAttackConfig({ name: 'sig' }), { name: 'sig', target: 0, rate: 0.1, labelMap: 'allToOne', delta: 40, frequency: 6 });
  assert.equal(getAttack('sig'), sig);
  assert.equal(sig.kind, 'clean-label');
});

test('sig: config errors name the field', () => {
  expectFieldError(() => parseAttackConfig({ name: 'sig', delta: 0 }), 'delta');
  expectFieldError(() => parseAttackConfig({ name: 'sig', delta: 300 }), 'delta');
  expectFieldError(() => parseAttackConfig({ name: 'sig', frequency: -1 }), 'frequency');
  expectFieldError(() => parseAttackConfig({ name: 'sig', f: 6 }), 'f');
  // clean-label: rate is a fraction of the whole set, capped by the target class (20 of 200 here)
  validateAttackAgainst(parseAttackConfig({ name: 'sig', rate: 0.1 }), train);
  expectFieldError(() => validateAttackAgainst(parseAttackConfig({ name: 'sig', rate: 0.11 }), train), 'rate', /needs 22 images of target class 0, .* only 20/);
  expectFieldError(() => sig.poisonTrainingSet(train, allIdx, parseAttackConfig({ name: 'sig', rate: 0.11 }), 1), 'rate', /22 .* only 20/);
  const noTarget = Int32Array.from(allIdx.filter((i) => train.labels[i] !== 0));
  expectFieldError(() => sig.poisonTrainingSet(train, noTarget, parseAttackConfig({ name: 'sig', rate: 0.05 }), 1), 'rate', /no image of target class 0 is eligible/);
  // all-to-all does not exist for a clean-label attack
  expectFieldError(() => validateAttackAgainst(parseAttackConfig({ name: 'sig', labelMap: 'allToAll' }), train), 'labelMap');
  expectFieldError(() => sig.poisonTrainingSet(train, allIdx, parseAttackConfig({ name: 'sig', labelMap: 'allToAll' }), 1), 'labelMap');
});

test('sig: P[i,j,c] = delta sin(2 pi j f / W) against a hand computation, clipped before the cast', () => {
  // W = 16, f = 6: sin(3 pi j / 4) -> j=0: 0, j=1: +0.7071, j=2: -1, j=3: +0.7071, j=4: 0, j=6: +1
  const row = sigSignalRow(16, 40, 6);
  assert.ok(Math.abs(row[1] - 40 * Math.SQRT1_2) < 1e-9);
  assert.ok(Math.abs(row[2] + 40) < 1e-9);
  assert.ok(Math.abs(row[6] - 40) < 1e-9);
  const cfg = parseAttackConfig({ name: 'sig' });
  const mid = sig.applyTrigger(constant(100, 3, 16), cfg, 0);
  for (let y = 0; y < 3; y++) {
    for (let c = 0; c < 3; c++) {
      const at = (x: number) => mid.images[(y * 16 + x) * 3 + c];
      assert.equal(at(0), 100);
      assert.equal(at(1), 128); // 100 + 28.28
      assert.equal(at(2), 60); // 100 - 40
      assert.equal(at(4), 100);
      assert.equal(at(6), 140);
    }
  }
  // near the ends of the range: saturate, never wrap around
  const hi = sig.applyTrigger(constant(250, 1, 16), cfg, 0);
  assert.equal(hi.images[1 * 3], 255); // 278.3 -> 255, not 22
  assert.equal(hi.images[2 * 3], 210);
  const lo = sig.applyTrigger(constant(10, 1, 16), cfg, 0);
  assert.equal(lo.images[2 * 3], 0); // -30 -> 0, not 226
  assert.equal(lo.images[1 * 3], 38);
  // frequency and amplitude are parameters; gray images get the same signal
  const g = sig.applyTrigger(constant(100, 1, 16, 1), parseAttackConfig({ name: 'sig', delta: 20, frequency: 1 }), 0);
  assert.equal(g.images[4], 120); // 100 + 20 sin(pi/2)
  assert.equal(g.images[12], 80);
});

test('sig: clean-label poisoning: only target-class images, labels unchanged, the rest byte-identical', () => {
  const { restIndices } = drawCleanBudget(train, 20, 1);
  const cfg = parseAttackConfig({ name: 'sig', rate: 0.08, target: 3 });
  const before = Uint8Array.from(train.images);
  const res = sig.poisonTrainingSet(train, restIndices, cfg, 5);
  assert.deepEqual(train.images, before, 'input not modified');
  assert.equal(res.poisonedIndices.length, 16); // round(0.08 * 200), of the 18 eligible class-3 images
  assert.equal(res.record.poisonedCount, 16);
  assert.equal(res.record.kind, 'clean-label');
  assert.deepEqual(res.dataset.labels, train.labels, 'no label changes');
  const row = sigSignalRow(W, 40, 6);
  checkPoisonedCopy(train, res, restIndices, (i, a, b) => {
    assert.equal(train.labels[i], 3, 'only target-class images');
    for (let p = 0; p < per; p++) {
      const x = Math.floor(p / 3) % W;
      assert.equal(b[p], Math.min(255, Math.max(0, Math.round(a[p] + row[x]))));
    }
  });
  res.originalLabels.forEach((y) => assert.equal(y, 3));
  // test time: the signal on the non-target images
  const bd = buildBackdoorTestSet(train, cfg, 5);
  assert.equal(bd.trueLabels.length, 180);
  assert.ok(bd.targetLabels.every((y) => y === 3));
  const src = bd.sourceIndices[0];
  assert.equal(bd.images.images[1 * 3], Math.min(255, Math.round(train.images[src * per + 3] + row[1])));
});

test('sig: the default rate 0.1 (the whole class here) is capped by the target images outside the clean budget', () => {
  const { cleanIndices, restIndices } = drawCleanBudget(train, 20, 1);
  const inBudget = Array.from(cleanIndices).filter((i) => train.labels[i] === 0).length;
  assert.equal(inBudget, 2);
  const res = sig.poisonTrainingSet(train, restIndices, parseAttackConfig({ name: 'sig' }), 1);
  assert.equal(res.poisonedIndices.length, 18, 'all 18 eligible class-0 images, not the requested 20');
  assert.equal(res.record.triggerParameters.requestedCount, 20);
  assert.equal(res.record.triggerParameters.eligibleTargetCount, 18);
  assert.ok(Array.from(res.poisonedIndices).every((i) => train.labels[i] === 0 && !cleanIndices.includes(i)));
  // below the cap the rate is exact
  assert.equal(sig.poisonTrainingSet(train, restIndices, parseAttackConfig({ name: 'sig', rate: 0.085 }), 1).poisonedIndices.length, 17);
});

test('sig: deterministic per seed, the seed picks the images', () => {
  const cfg = parseAttackConfig({ name: 'sig', rate: 0.05 });
  const { a } = poisonedBySeed((seed) => sig.poisonTrainingSet(train, allIdx, cfg, seed));
  assert.equal(a.poisonedIndices.length, 10);
});
