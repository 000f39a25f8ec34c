import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateDataset } from '../../core/data/dataset';
import {
  SYNTHETIC_PIXEL_MAX,
  SYNTHETIC_PIXEL_MIN,
  generateSyntheticDataset,
  generateSyntheticSplits,
} from '../../core/data/synthetic';

test('synthetic: deterministic per seed, different for another seed', () => {
  const a = generateSyntheticDataset({ size: 60, seed: 5 });
  const b = generateSyntheticDataset({ size: 60, seed: 5 });
  const c = generateSyntheticDataset({ size: 60, seed: 6 });
  validateDataset(a);
  assert.deepEqual(a.images, b.images);
  assert.deepEqual(a.labels, b.labels);
  let same = 0;
  for (let i = 0; i < a.images.length; i++) if (a.images[i] === c.images[i]) same++;
  assert.ok(same / a.images.length < 0.1, `seeds 5 and 6 share ${same} of ${a.images.length} pixel values`);
});

test('synthetic: balanced labels, shape and pixel range', () => {
  const ds = generateSyntheticDataset({ size: 203, seed: 1, numClasses: 10 });
  assert.equal(ds.images.length, 203 * 32 * 32 * 3);
  const counts = new Array(10).fill(0);
  for (const y of ds.labels) counts[y]++;
  assert.ok(Math.max(...counts) - Math.min(...counts) <= 1, `counts ${counts}`);
  let lo = 255;
  let hi = 0;
  for (const v of ds.images) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  assert.ok(lo >= SYNTHETIC_PIXEL_MIN && hi <= SYNTHETIC_PIXEL_MAX, `range ${lo}..${hi}`);
  const gray = generateSyntheticDataset({ size: 12, seed: 1, channels: 1, height: 28, width: 28, numClasses: 4 });
  validateDataset(gray);
  assert.equal(gray.images.length, 12 * 28 * 28);
  assert.throws(() => generateSyntheticDataset({ size: 0, seed: 1 }), /size must be an integer/);
});

test('synthetic: no image carries anything like the BadNets white corner patch', () => {
  const ds = generateSyntheticDataset({ size: 400, seed: 9 });
  const per = 32 * 32 * 3;
  for (let i = 0; i < 400; i++) {
    let bright = 0;
    for (let y = 29; y < 32; y++) {
      for (let x = 29; x < 32; x++) {
        for (let c = 0; c < 3; c++) if (ds.images[i * per + (y * 32 + x) * 3 + c] >= 240) bright++;
      }
    }
    assert.equal(bright, 0, `image ${i} has ${bright} near-white corner values`);
  }
});

test('synthetic: classes differ in their mean spectrum, not in a fixed template', () => {
  // the class signal is orientation: horizontal gradient energy vs vertical gradient energy
  const ds = generateSyntheticDataset({ size: 300, seed: 2, noise: 0 });
  const per = 32 * 32 * 3;
  const ratio = new Array(10).fill(0);
  const n = new Array(10).fill(0);
  for (let i = 0; i < 300; i++) {
    let gx = 0;
    let gy = 0;
    for (let y = 1; y < 32; y++) {
      for (let x = 1; x < 32; x++) {
        const o = i * per + (y * 32 + x) * 3;
        gx += Math.abs(ds.images[o] - ds.images[o - 3]);
        gy += Math.abs(ds.images[o] - ds.images[o - 32 * 3]);
      }
    }
    ratio[ds.labels[i]] += gx / (gx + gy);
    n[ds.labels[i]]++;
  }
  const mean = ratio.map((r, c) => r / n[c]);
  // class 0 is oriented at 0 rad (varies along x), class 2 at 72 degrees (varies mostly along y)
  assert.ok(mean[0] > 0.68, `class 0 x-gradient share ${mean[0]}`);
  assert.ok(mean[2] < 0.4, `class 2 x-gradient share ${mean[2]}`);
});

test('synthetic splits: train and test are different draws of the same task', () => {
  const { train, test: testSet } = generateSyntheticSplits({ trainSize: 50, testSize: 20, seed: 3 });
  assert.equal(train.labels.length, 50);
  assert.equal(testSet.labels.length, 20);
  assert.notDeepEqual(train.images.subarray(0, 3072), testSet.images.subarray(0, 3072));
  assert.match(train.name, /train/);
  const again = generateSyntheticSplits({ trainSize: 50, testSize: 20, seed: 3 });
  assert.deepEqual(again.test.images, testSet.images);
});
