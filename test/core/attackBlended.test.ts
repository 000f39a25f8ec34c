import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { PNG } from 'pngjs';

import { generateSyntheticDataset } from '../../core/data/synthetic';
import { drawCleanBudget } from '../../core/data/splits';
import type { ImageDataset } from '../../core/data/dataset';
import { attackRegistry, getAttack, parseAttackConfig, validateAttackAgainst } from '../../core/attacks/registry';
import { blended, blendedNoisePattern } from '../../core/attacks/blended';
import { buildBackdoorTestSet } from '../../core/attacks/testSet';
import { allIndices, checkPoisonedCopy, expectFieldError, poisonedBySeed } from '../support/attackFixtures';

const H = 16;
const W = 12;
const per = H * W * 3;
const train = generateSyntheticDataset({ size: 200, seed: 11, height: H, width: W });
const allIdx = allIndices(200);

const dir = mkdtempSync(path.join(tmpdir(), 'ntml-blended-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Writes an RGBA PNG of w x h whose pixel (x, y) is rgb(x, y). */
function writePng(name: string, w: number, h: number, rgb: (x: number, y: number) => [number, number, number]): string {
  const png = new PNG({ width: w, height: h });
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) png.data.set([...rgb(x, y), 255], (y * w + x) * 4);
  }
  const file = path.join(dir, name);
  writeFileSync(file, PNG.sync.write(png));
  return file;
}

function tiny(pixels: number[], h: number, w: number, c: number, labels: number[]): ImageDataset {
  return { name: 'tiny', height: h, width: w, channels: c, numClasses: 10, images: Uint8Array.from(pixels), labels: Int32Array.from(labels) };
}

test('blended: defaults per attacks.md, registered as dirty-label', () => {
  assert.deepEqual(parseAttackConfig({ name: 'blended' }), {
    name: 'blended',
    target: 0,
    rate: 0.1,
    labelMap: 'allToOne',
    alpha: 0.2,
    patternSeed: 0,
  });
  assert.equal(getAttack('blended'), blended);
  assert.ok(attackRegistry.has('blended'));
  assert.equal(blended.kind, 'dirty-label');
  assert.match(blended.description, /Blended-noise/);
});

test('blended: config errors name the field', () => {
  expectFieldError(() => parseAttackConfig({ name: 'blended', alpha: 0 }), 'alpha');
  expectFieldError(() => parseAttackConfig({ name: 'blended', alpha: 1.2 }), 'alpha');
  expectFieldError(() => parseAttackConfig({ name: 'blended', patternSeed: -1 }), 'patternSeed');
  expectFieldError(() => parseAttackConfig({ name: 'blended', patternSeed: 0.5 }), 'patternSeed');
  expectFieldError(() => parseAttackConfig({ name: 'blended', imagePath: '' }), 'imagePath');
  expectFieldError(() => parseAttackConfig({ name: 'blended', alfa: 0.3 }), 'alfa');
  expectFieldError(() => parseAttackConfig({ name: 'blended', rate: 0 }), 'rate');
  // data-set-dependent: the trigger image must be a readable PNG
  const missing = path.join(dir, 'missing.png');
  expectFieldError(() => validateAttackAgainst(parseAttackConfig({ name: 'blended', imagePath: missing }), train), 'imagePath', /cannot read .*ENOENT/);
  const notPng = path.join(dir, 'not-a.png');
  writeFileSync(notPng, 'hello');
  expectFieldError(() => validateAttackAgainst(parseAttackConfig({ name: 'blended', imagePath: notPng }), train), 'imagePath', /not a readable PNG/);
  expectFieldError(() => blended.poisonTrainingSet(train, allIdx, parseAttackConfig({ name: 'blended', imagePath: notPng }), 1), 'imagePath');
  validateAttackAgainst(parseAttackConfig({ name: 'blended', imagePath: writePng('ok.png', 3, 5, () => [1, 2, 3]) }), train);
});

test('blended: the noise pattern is U{0..255}, fixed by patternSeed, independent of the attack seed', () => {
  const shape = { height: H, width: W, channels: 3 };
  const a = blendedNoisePattern(0, shape);
  assert.equal(a.length, per);
  assert.deepEqual(blendedNoisePattern(0, shape), a);
  assert.notDeepEqual(blendedNoisePattern(1, shape), a);
  const mean = a.reduce((s, v) => s + v, 0) / a.length;
  assert.ok(Math.abs(mean - 127.5) < 12, `mean ${mean}`);
  assert.ok(Math.min(...a) <= 3 && Math.max(...a) >= 252, 'spans 0..255');
  // the trigger on the poisoned images is the same for two attack seeds
  const cfg = parseAttackConfig({ name: 'blended' });
  const t1 = blended.applyTrigger(train, cfg, 1);
  const t2 = blended.applyTrigger(train, cfg, 999);
  assert.deepEqual(t1.images, t2.images);
  const t3 = blended.applyTrigger(train, parseAttackConfig({ name: 'blended', patternSeed: 7 }), 1);
  assert.notDeepEqual(t3.images, t1.images);
});

test('blended: x\' = round(clip((1-a) x + a T)) against a hand computation', () => {
  // 1x2 RGB image, trigger image rgb(x, y) scaled: T(0,0) = (200, 0, 255), T(1,0) = (255, 10, 0)
  const file = writePng('t.png', 2, 1, (x) => (x === 0 ? [200, 0, 255] : [255, 10, 0]));
  const ds = tiny([100, 50, 255, 255, 0, 7], 1, 2, 3, [3]);
  const cfg = parseAttackConfig({ name: 'blended', imagePath: file });
  const out = blended.applyTrigger(ds, cfg, 0);
  // 0.8*100 + 0.2*200 = 120; 0.8*50 + 0 = 40; 0.8*255 + 0.2*255 = 255 (no 254 from float error)
  // 0.8*255 + 0.2*255 = 255; 0.8*0 + 0.2*10 = 2; 0.8*7 + 0 = 5.6 -> 6
  assert.deepEqual(Array.from(out.images), [120, 40, 255, 255, 2, 6]);
  assert.deepEqual(Array.from(ds.images), [100, 50, 255, 255, 0, 7], 'input untouched');
  // alpha 1: the image becomes the trigger exactly
  const full = blended.applyTrigger(ds, parseAttackConfig({ name: 'blended', imagePath: file, alpha: 1 }), 0);
  assert.deepEqual(Array.from(full.images), [200, 0, 255, 255, 10, 0]);
  // noise trigger, per pixel
  const noise = blendedNoisePattern(0, train);
  const t = blended.applyTrigger(train, parseAttackConfig({ name: 'blended', alpha: 0.35 }), 0);
  for (let p = 0; p < 3 * per; p++) {
    const want = Math.min(255, Math.max(0, Math.round(0.65 * train.images[p] + 0.35 * noise[p % per])));
    assert.equal(t.images[p], want, `pixel ${p}`);
  }
});

test('blended: a trigger image is resized nearest-neighbour and converted to the data set channels', () => {
  // 4x2 source (x, y) -> rgb(10x, 100y, 7); to 2x2: columns 1 and 3 (pixel centres), rows 0 and 1
  const file = writePng('r.png', 4, 2, (x, y) => [10 * x, 100 * y, 7]);
  const zeros = tiny(new Array(12).fill(0), 2, 2, 3, [1]);
  const cfg = parseAttackConfig({ name: 'blended', imagePath: file, alpha: 1 });
  assert.deepEqual(Array.from(blended.applyTrigger(zeros, cfg, 0).images), [10, 0, 7, 30, 0, 7, 10, 100, 7, 30, 100, 7]);
  // gray data: luminance 0.299 R + 0.587 G + 0.114 B
  const gray = tiny([0, 0, 0, 0], 2, 2, 1, [1]);
  const g = blended.applyTrigger(gray, cfg, 0);
  assert.deepEqual(Array.from(g.images), [10, 30, 10, 30].map((r, k) => Math.round(0.299 * r + 0.587 * (k < 2 ? 0 : 100) + 0.114 * 7)));
});

test('blended: poisons round(rate*n) eligible images, labels -> target, everything else byte-identical', () => {
  const { restIndices } = drawCleanBudget(train, 20, 1);
  const cfg = parseAttackConfig({ name: 'blended', rate: 0.13, target: 4 });
  const before = Uint8Array.from(train.images);
  const res = blended.poisonTrainingSet(train, restIndices, cfg, 5);
  assert.deepEqual(train.images, before, 'input not modified');
  assert.equal(res.poisonedIndices.length, 26);
  assert.equal(res.record.poisonedCount, 26);
  assert.equal(res.record.kind, 'dirty-label');
  assert.equal(res.record.triggerParameters.variant, 'Blended-noise');
  assert.equal(res.record.triggerParameters.patternSeed, 0);
  assert.equal(res.crossIndices, undefined);
  const noise = blendedNoisePattern(0, train);
  checkPoisonedCopy(train, res, restIndices, (i, a, b) => {
    assert.equal(res.dataset.labels[i], 4);
    for (let p = 0; p < per; p++) assert.equal(b[p], Math.round(0.8 * a[p] + 0.2 * noise[p]));
  });
  res.poisonedIndices.forEach((i, k) => assert.equal(res.originalLabels[k], train.labels[i]));
  assert.ok(new Set(res.originalLabels).size >= 5, 'dirty-label: drawn from every class');
  // the test-time trigger is the training trigger
  const bd = buildBackdoorTestSet(train, cfg, 5, res.record.triggerParameters);
  const k = bd.sourceIndices.findIndex((src) => res.poisonedIndices.includes(src));
  const src = bd.sourceIndices[k];
  assert.deepEqual(bd.images.images.subarray(k * per, (k + 1) * per), res.dataset.images.subarray(src * per, (src + 1) * per));
  assert.ok(bd.trueLabels.every((y) => y !== 4));
});

test('blended: deterministic per seed, the seed picks the images; all-to-all maps y -> y+1', () => {
  const cfg = parseAttackConfig({ name: 'blended' });
  const { a, c } = poisonedBySeed((seed) => blended.poisonTrainingSet(train, allIdx, cfg, seed));
  assert.equal(a.record.triggerParameters.patternDigest, c.record.triggerParameters.patternDigest);
  const all = blended.poisonTrainingSet(train, allIdx, parseAttackConfig({ name: 'blended', labelMap: 'allToAll', rate: 0.2 }), 3);
  assert.equal(all.poisonedIndices.length, 40);
  all.poisonedIndices.forEach((i, k) => assert.equal(all.dataset.labels[i], (all.originalLabels[k] + 1) % 10));
});
