import { test } from 'node:test';
import assert from 'node:assert/strict';

import { generateSyntheticDataset } from '../../core/data/synthetic';
import { drawCleanBudget } from '../../core/data/splits';
import {
  attackRegistry,
  getAttack,
  parseAttackConfig,
  validateAttackAgainst,
} from '../../core/attacks/registry';
import { badnets } from '../../core/attacks/badnets';
import { allIndices, checkPoisonedCopy, expectFieldError, poisonedBySeed } from '../support/attackFixtures';

const H = 16;
const W = 12;
const train = generateSyntheticDataset({ size: 200, seed: 11, height: H, width: W });
const per = H * W * 3;
const allIdx = allIndices(200);

function isPatch(y: number, x: number, p = 3): boolean {
  return y >= H - p && x >= W - p;
}

test('parseAttackConfig fills the attacks.md defaults', () => {
  assert.deepEqual(parseAttackConfig({ name: 'badnets' }), { name: 'badnets', target: 0, rate: 0.1, labelMap: 'allToOne', patchSize: 3 });
  assert.equal(getAttack('badnets'), badnets);
  assert.ok(attackRegistry.has('badnets'));
  assert.equal(badnets.kind, 'dirty-label');
});

test('config errors name the field', () => {
  expectFieldError(() => parseAttackConfig({ name: 'badnet' }), 'name', /known attacks: .*badnets/);
  expectFieldError(() => parseAttackConfig({}), 'name');
  expectFieldError(() => getAttack('nope'), 'name', /known attacks/);
  expectFieldError(() => parseAttackConfig({ name: 'badnets', target: -1 }), 'target');
  expectFieldError(() => parseAttackConfig({ name: 'badnets', target: 1.5 }), 'target');
  expectFieldError(() => parseAttackConfig({ name: 'badnets', rate: 0 }), 'rate');
  expectFieldError(() => parseAttackConfig({ name: 'badnets', rate: 1.2 }), 'rate');
  expectFieldError(() => parseAttackConfig({ name: 'badnets', patchSize: 0 }), 'patchSize');
  expectFieldError(() => parseAttackConfig({ name: 'badnets', labelMap: 'oneToOne' }), 'labelMap');
  expectFieldError(() => parseAttackConfig({ name: 'badnets', patchsize: 4 }), 'patchsize');
  // against a data set
  expectFieldError(() => validateAttackAgainst(parseAttackConfig({ name: 'badnets', target: 10 }), train), 'target', /\[0, 9\]/);
  expectFieldError(() => validateAttackAgainst(parseAttackConfig({ name: 'badnets', patchSize: 13 }), train), 'patchSize', /16x12/);
  expectFieldError(() => validateAttackAgainst(parseAttackConfig({ name: 'badnets', rate: 0.001 }), train), 'rate', /no image/);
  validateAttackAgainst(parseAttackConfig({ name: 'badnets', patchSize: 12 }), train);
  // more poison than eligible images
  const cfg = parseAttackConfig({ name: 'badnets', rate: 0.5 });
  expectFieldError(() => badnets.poisonTrainingSet(train, allIdx.subarray(0, 99), cfg, 1), 'rate', /100 poisoned .* only 99/);
  expectFieldError(() => badnets.poisonTrainingSet(train, Int32Array.from([0, 200]), parseAttackConfig({ name: 'badnets', rate: 0.005 }), 1), 'eligibleIndices');
});

test('badnets poisons round(rate*n) eligible images: patch exactly 255, labels -> target, rest untouched', () => {
  const { restIndices } = drawCleanBudget(train, 20, 1);
  const cfg = parseAttackConfig({ name: 'badnets', rate: 0.13, target: 4 });
  const before = Uint8Array.from(train.images);
  const res = badnets.poisonTrainingSet(train, restIndices, cfg, 5);
  assert.deepEqual(train.images, before, 'input not modified');
  assert.equal(res.poisonedIndices.length, 26); // round(0.13 * 200)
  assert.equal(res.record.poisonedCount, 26);
  assert.equal(res.record.seed, 5);
  assert.equal(res.record.attack, 'badnets');
  for (let k = 1; k < res.poisonedIndices.length; k++) assert.ok(res.poisonedIndices[k - 1] < res.poisonedIndices[k]);
  checkPoisonedCopy(train, res, restIndices, (i, a, b) => {
    assert.equal(res.dataset.labels[i], 4);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        for (let c = 0; c < 3; c++) {
          const o = (y * W + x) * 3 + c;
          if (isPatch(y, x)) assert.equal(b[o], 255, `patch pixel ${y},${x}`);
          else assert.equal(b[o], a[o], `non-patch pixel ${y},${x} of image ${i}`);
        }
      }
    }
  });
  res.poisonedIndices.forEach((i, k) => assert.equal(res.originalLabels[k], train.labels[i]));
  // dirty-label: draws from every class, the target class included
  assert.ok(new Set(res.originalLabels).size >= 5);
});

test('badnets is deterministic per seed and the seed matters', () => {
  const cfg = parseAttackConfig({ name: 'badnets' });
  poisonedBySeed((seed) => badnets.poisonTrainingSet(train, allIdx, cfg, seed));
  // count is round(rate * n), not floor: 0.1234 * 200 = 24.68 -> 25
  assert.equal(badnets.poisonTrainingSet(train, allIdx, parseAttackConfig({ name: 'badnets', rate: 0.1234 }), 1).poisonedIndices.length, 25);
});

test('badnets all-to-all maps y -> (y+1) mod K; patch size is configurable', () => {
  const cfg = parseAttackConfig({ name: 'badnets', labelMap: 'allToAll', rate: 0.2, patchSize: 5 });
  const res = badnets.poisonTrainingSet(train, allIdx, cfg, 3);
  assert.equal(res.poisonedIndices.length, 40);
  res.poisonedIndices.forEach((i, k) => {
    assert.equal(res.dataset.labels[i], (res.originalLabels[k] + 1) % 10);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const o = i * per + (y * W + x) * 3;
        if (isPatch(y, x, 5)) assert.equal(res.dataset.images[o + 1], 255);
        else assert.equal(res.dataset.images[o + 1], train.images[o + 1]);
      }
    }
  });
});

test('badnets test-time trigger stamps the same patch on every image, labels unchanged', () => {
  const cfg = parseAttackConfig({ name: 'badnets' });
  const gray = generateSyntheticDataset({ size: 5, seed: 2, channels: 1, height: 8, width: 8 });
  const trig = badnets.applyTrigger(gray, cfg, 0);
  assert.deepEqual(trig.labels, gray.labels);
  assert.notEqual(trig.images, gray.images);
  for (let i = 0; i < 5; i++) {
    for (let p = 0; p < 64; p++) {
      const y = Math.floor(p / 8);
      const x = p % 8;
      const want = y >= 5 && x >= 5 ? 255 : gray.images[i * 64 + p];
      assert.equal(trig.images[i * 64 + p], want);
    }
  }
  // the trigger of the poisoned training images and of the test images is the same
  const res = badnets.poisonTrainingSet(train, allIdx, cfg, 9);
  const all = badnets.applyTrigger(train, cfg, 9);
  const i = res.poisonedIndices[0];
  assert.deepEqual(all.images.subarray(i * per, (i + 1) * per), res.dataset.images.subarray(i * per, (i + 1) * per));
});
