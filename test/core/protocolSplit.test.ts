/**
 * The evaluation protocol's data split (docs/protocol.md): D_c is the defender's own data.
 * From the source indices prepareData records, no clean-budget index (fitting or held out),
 * nor any other image of the clean reserve, is part of the training set that standard
 * training, non-target training and split distillation learn from; and the stored records
 * are the images at those indices, so the indices describe what the stages really received.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePurifyConfig, type PurifyConfigInput } from '../../schemas/purify';
import { prepareData, type PreparedData } from '../../core/experiment/prepareData';
import { deriveSeed } from '../../core/rng';
import { imageBytes, type ImageDataset } from '../../core/data/dataset';
import { generateSyntheticSplits } from '../../core/data/synthetic';
import { drawCleanBudget } from '../../core/data/splits';

const DATA = { format: 'synthetic', trainSize: 600, testSize: 60, height: 8, width: 8, numClasses: 4 } as const;

const config = (over: Partial<PurifyConfigInput>) =>
  parsePurifyConfig({ seed: 5, data: DATA, attack: { name: 'badnets', rate: 0.1 }, cleanReserve: { fraction: 0.2 }, ...over } as PurifyConfigInput);

const pixels = (ds: ImageDataset, i: number) => {
  const per = imageBytes(ds);
  return Buffer.from(ds.images.subarray(i * per, (i + 1) * per)).toString('hex');
};

function assertDisjoint(p: PreparedData, what: string, reserveSize: number) {
  const idx = p.sourceIndices!;
  const training = new Set(idx.training);
  for (const [name, list] of [['fitting', idx.cleanFit], ['held-out', idx.cleanHeldOut]] as const) {
    const leaked = list.filter((i) => training.has(i));
    assert.deepEqual(leaked, [], `${what}: ${name} indices of D_c inside the training set`);
  }
  assert.deepEqual(idx.cleanFit.filter((i) => idx.cleanHeldOut.includes(i)), [], `${what}: fitting and held-out slices overlap`);
  // the whole reserve is outside: the training set is the split minus the reserve, whatever the budget
  assert.equal(idx.training.length, DATA.trainSize - reserveSize, `${what}: training set size`);
  assert.equal(p.train.labels.length, idx.training.length);
  assert.equal(p.summary.trainSize, idx.training.length);
  assert.equal(p.summary.cleanSetOutsideTraining, true);
}

test('evaluation mode: no D_c index and no held-out index is part of the training set, at |D_c| = 100 and 5%', async () => {
  const { train: clean } = generateSyntheticSplits({ ...DATA, seed: deriveSeed(5, 'synthetic') } as never);
  const attacks = [
    { name: 'badnets', rate: 0.1 },
    { name: 'wanet', mode: 'poisonOnly', rate: 0.1 },
    { name: 'wanet', rate: 0.1 }, // training-controlled, the default
    { name: 'inputaware', rate: 0.1 },
  ] as const;
  for (const attack of attacks) {
    const runs: PreparedData[] = [];
    for (const cleanBudget of [100, { fraction: 0.05 }] as const) {
      const what = `${attack.name} at |D_c| = ${JSON.stringify(cleanBudget)}`;
      const p = await prepareData(config({ attack, cleanBudget }));
      assertDisjoint(p, what, 120);
      // the stored records are the images at the recorded indices: D_c's exactly, the training set's
      // exactly where not poisoned (WaNet's noise set warps images under their true labels, so
      // there only the labels; the training-controlled attack poisons later, in its own run)
      p.sourceIndices!.cleanFit.forEach((i, k) => assert.equal(pixels(p.cleanFit, k), pixels(clean, i), `${what}: fit record ${k}`));
      p.sourceIndices!.cleanHeldOut.forEach((i, k) => assert.equal(pixels(p.cleanHeldOut, k), pixels(clean, i), `${what}: held-out record ${k}`));
      const poisoned = new Set(p.poison?.poisonedIndices ?? []);
      p.sourceIndices!.training.forEach((i, k) => {
        if (poisoned.has(k)) return;
        assert.equal(p.train.labels[k], clean.labels[i], `${what}: training label ${k}`);
        if (attack.name !== 'wanet') assert.equal(pixels(p.train, k), pixels(clean, i), `${what}: training record ${k}`);
      });
      // and no training image is pixel-identical to a D_c image (synthetic images are distinct)
      const trainPixels = new Set(Array.from({ length: p.train.labels.length }, (_, k) => pixels(p.train, k)));
      for (const ds of [p.cleanFit, p.cleanHeldOut]) {
        for (let k = 0; k < ds.labels.length; k++) assert.ok(!trainPixels.has(pixels(ds, k)), `${what}: a D_c image is in the training set`);
      }
      if (p.trainingControlled) {
        assert.equal(p.trainingControlled!.eligibleIndices.length, p.train.labels.length, 'the attacker may poison only its own training set');
      } else {
        assert.equal(p.poison!.poisonedIndices.length, Math.round(0.1 * p.train.labels.length), 'the rate is a fraction of the training set');
        assert.ok(p.poison!.poisonedIndices.every((k) => k >= 0 && k < p.train.labels.length));
      }
      runs.push(p);
    }
    // both budgets share one training set (and so one backdoored model)
    assert.deepEqual(runs[0].sourceIndices!.training, runs[1].sourceIndices!.training, `${attack.name}: same training set at both budgets`);
    assert.equal(pixels(runs[0].train, 7), pixels(runs[1].train, 7));
  }
  // the recorded training indices are the complement of the reserve drawCleanBudget draws
  const { restIndices } = drawCleanBudget(clean, 100, 5, { fraction: 0.2 });
  assert.deepEqual((await prepareData(config({ cleanBudget: 30 }))).sourceIndices!.training, Array.from(restIndices));
});

test('evaluation mode: a budget above the reserve grows the reserve, and D_c still stays outside the training set', async () => {
  const p = await prepareData(config({ cleanBudget: 150 }));
  assertDisjoint(p, '|D_c| = 150 > reserve 120', 150);
  assert.equal(p.summary.cleanReserve, 150);
});
