import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateSyntheticDataset } from '../../core/data/synthetic';
import { parseAttackConfig } from '../../core/attacks/registry';
import { buildBackdoorTestSet } from '../../core/attacks/testSet';

const testSet = generateSyntheticDataset({ size: 50, seed: 4, height: 8, width: 8 });

test('backdoor test set: non-target images only, triggered, with true and target labels', () => {
  const cfg = parseAttackConfig({ name: 'badnets', target: 2 });
  const bd = buildBackdoorTestSet(testSet, cfg, 1);
  const nonTarget = Array.from(testSet.labels).filter((y) => y !== 2).length;
  assert.equal(nonTarget, 45);
  assert.equal(bd.trueLabels.length, 45);
  assert.equal(bd.images.labels.length, 45);
  assert.ok(bd.trueLabels.every((y) => y !== 2));
  assert.ok(bd.targetLabels.every((y) => y === 2));
  bd.sourceIndices.forEach((src, k) => {
    assert.equal(bd.trueLabels[k], testSet.labels[src]);
    const o = k * 192;
    for (let p = 0; p < 64; p++) {
      const y = Math.floor(p / 8);
      const x = p % 8;
      const want = y >= 5 && x >= 5 ? 255 : testSet.images[src * 192 + p * 3];
      assert.equal(bd.images.images[o + p * 3], want);
    }
  });
  // the clean test set is untouched
  assert.ok(testSet.images.every((v) => v < 255));
});

test('backdoor test set: all-to-all keeps every image, target = (y+1) mod K', () => {
  const cfg = parseAttackConfig({ name: 'badnets', labelMap: 'allToAll' });
  const bd = buildBackdoorTestSet(testSet, cfg, 1);
  assert.equal(bd.trueLabels.length, 50);
  bd.trueLabels.forEach((y, k) => assert.equal(bd.targetLabels[k], (y + 1) % 10));
  assert.throws(() => buildBackdoorTestSet(testSet, parseAttackConfig({ name: 'badnets', target: 12 }), 1), /^AttackConfigError: target/);
});

test('a poisoned set survives the codec with its poison record', async () => {
  const { encodeDataset, decodeDatasetWithMeta } = await import('../../core/data/codec');
  const { getAttack } = await import('../../core/attacks/registry');
  const { poisonResultToMeta, poisonResultFromMeta } = await import('../../core/attacks/poisonMeta');
  const cfg = parseAttackConfig({ name: 'badnets', rate: 0.2 });
  const res = getAttack('badnets').poisonTrainingSet(testSet, Int32Array.from({ length: 50 }, (_, i) => i), cfg, 3);
  const bytes = encodeDataset(res.dataset, poisonResultToMeta(res));
  const { dataset, meta } = decodeDatasetWithMeta(bytes, 'mem');
  const back = poisonResultFromMeta(dataset, meta, 'mem');
  assert.deepEqual(back, res);
  assert.throws(() => poisonResultFromMeta(dataset, { ...meta, originalLabels: [] }, 'mem'), /meta\.poisonedIndices: mem/);
});
