/**
 * prepareData: what a purify config turns into. Evaluation mode draws D_c first and poisons
 * only the rest; protection mode reads the user's files and checks they fit together.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parsePurifyConfig, type PurifyConfigInput } from '../../schemas/purify';
import { prepareData } from '../../core/experiment/prepareData';
import { deriveSeed } from '../../core/rng';
import { DatasetError, imageBytes, type ImageDataset } from '../../core/data/dataset';
import { generateSyntheticDataset, generateSyntheticSplits } from '../../core/data/synthetic';
import { drawCleanBudget } from '../../core/data/splits';
import { encodeDataset } from '../../core/data/codec';
import { AttackConfigError } from '../../core/attacks/registry';

const evaluation = (over: Partial<PurifyConfigInput> = {}): PurifyConfigInput => ({
  seed: 3,
  data: { format: 'synthetic', trainSize: 200, testSize: 60, height: 8, width: 8, numClasses: 4 },
  attack: { name: 'badnets', target: 1, rate: 0.1 },
  cleanBudget: 30,
  ...over,
});

function record(ds: ImageDataset, i: number): string {
  const per = imageBytes(ds);
  return `${ds.labels[i]}:${Buffer.from(ds.images.subarray(i * per, (i + 1) * per)).toString('hex')}`;
}

function records(ds: ImageDataset): string[] {
  return Array.from({ length: ds.labels.length }, (_, i) => record(ds, i)).sort();
}

test('prepareData (evaluation): D_c is drawn first, stays clean, and is split into fit / held-out', async () => {
  const cfg = parsePurifyConfig(evaluation());
  const prepared = await prepareData(cfg);
  // the clean data and the clean budget, recomputed the documented way
  const { train: clean, test } = generateSyntheticSplits({ ...cfg.data!, format: undefined, seed: deriveSeed(3, 'synthetic') } as never);
  const { cleanIndices } = drawCleanBudget(clean, 30, 3, cfg.cleanReserve);
  const poisoned = prepared.poison!.poisonedIndices;

  assert.equal(prepared.summary.cleanBudget, 30);
  assert.equal(prepared.cleanFit.labels.length + prepared.cleanHeldOut.labels.length, 30);
  assert.equal(prepared.cleanHeldOut.labels.length, 6, 'round(0.2 * 30) held out');
  assert.equal(prepared.summary.cleanFit, 24);
  assert.equal(prepared.summary.cleanHeldOut, 6);
  // D_c is exactly the clean records at the drawn indices
  const fromBudget = Array.from(cleanIndices, (i) => record(clean, i)).sort();
  assert.deepEqual([...records(prepared.cleanFit), ...records(prepared.cleanHeldOut)].sort(), fromBudget);
  assert.equal(new Set(records(prepared.cleanFit)).size + new Set(records(prepared.cleanHeldOut)).size, 30, 'fit and held-out are disjoint');

  // the training set is the split without the reserve (here D_c itself: 30 > 5% of 200), in order
  const { restIndices } = drawCleanBudget(clean, 30, 3, cfg.cleanReserve);
  assert.equal(prepared.train.labels.length, 170, 'D_c is not part of the training set');
  assert.equal(prepared.summary.trainSize, 170);
  assert.equal(prepared.summary.cleanSetOutsideTraining, true);
  assert.deepEqual(prepared.sourceIndices!.training, Array.from(restIndices));

  // poisoning: round(0.1 * 170) positions of the training set, relabelled to the target with the patch
  assert.equal(poisoned.length, 17);
  assert.equal(prepared.summary.poisonedCount, 17);
  const poisonSet = new Set(poisoned);
  const per = imageBytes(clean);
  for (let k = 0; k < 170; k++) {
    if (poisonSet.has(k)) {
      assert.equal(prepared.train.labels[k], 1);
      assert.equal(prepared.train.images[(k + 1) * per - 1], 255, 'bottom-right pixel is the white patch');
    } else {
      assert.equal(record(prepared.train, k), record(clean, restIndices[k]), `training record ${k} is clean record ${restIndices[k]}, untouched`);
    }
  }

  // backdoor test set: every non-target test image, triggered, with its true label
  const nonTarget = Array.from(test.labels).map((y, i) => (y !== 1 ? i : -1)).filter((i) => i >= 0);
  const bt = prepared.backdoorTest!;
  assert.deepEqual(Array.from(bt.sourceIndices), nonTarget);
  assert.ok(bt.trueLabels.every((y) => y !== 1));
  assert.ok(bt.targetLabels.every((y) => y === 1));
  assert.equal(prepared.summary.backdoorTestSize, nonTarget.length);
  assert.deepEqual(prepared.test!.labels, test.labels);

  // deterministic in the seed
  const again = await prepareData(cfg);
  assert.deepEqual(records(again.cleanFit), records(prepared.cleanFit));
  assert.deepEqual(again.poison!.poisonedIndices, poisoned);
  const other = await prepareData(parsePurifyConfig(evaluation({ seed: 4 })));
  assert.notDeepEqual(other.poison!.poisonedIndices, poisoned);
});

test('prepareData (evaluation): fraction budgets, held-out fraction, and impossible budgets name their field', async () => {
  const byFraction = await prepareData(parsePurifyConfig(evaluation({ cleanBudget: { fraction: 0.1 }, ntml: { heldOutFraction: 0.5 } })));
  assert.equal(byFraction.summary.cleanBudget, 20);
  assert.equal(byFraction.cleanHeldOut.labels.length, 10);
  await assert.rejects(prepareData(parsePurifyConfig(evaluation({ cleanBudget: 300 }))), (e: Error) => e instanceof DatasetError && /^cleanBudget: /.test(e.message));
  // the rate is a fraction of the training set that is left: 197 in the reserve leave 3 images, round(0.1 * 3) = 0 poisoned
  await assert.rejects(
    prepareData(parsePurifyConfig(evaluation({ cleanBudget: 197 }))),
    (e: Error) => e instanceof AttackConfigError && e.field === 'rate',
  );
  await assert.rejects(
    prepareData(parsePurifyConfig(evaluation({ cleanBudget: 199 }))),
    (e: Error) => e instanceof DatasetError && /^cleanReserve: .*leaving 1 to train on/.test(e.message),
  );
  await assert.rejects(
    prepareData(parsePurifyConfig(evaluation({ cleanBudget: 2 }))),
    (e: Error) => e instanceof DatasetError && /^cleanBudget: 2 clean samples leave/.test(e.message),
  );
});

test('prepareData (protection): reads ntml files, splits the clean set, and refuses files that do not fit', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ntml-prepare-'));
  try {
    const make = (size: number, seed: number, side = 8) => generateSyntheticDataset({ size, numClasses: 4, height: side, width: side, channels: 3, seed });
    const train = make(40, 1);
    const clean = make(10, 2);
    const write = async (name: string, bytes: Uint8Array) => {
      const file = path.join(dir, name);
      await fs.writeFile(file, bytes);
      return file;
    };
    const trainFile = await write('train.ntds', encodeDataset(train));
    const cleanFile = await write('clean.ntds', encodeDataset(clean));
    const testFile = await write('test.ntds', encodeDataset(make(12, 3)));
    const cfg = (cleanLocation: string, extra: object = {}) =>
      parsePurifyConfig({
        mode: 'protection',
        trainingSet: { format: 'ntml', location: trainFile },
        cleanSet: { format: 'ntml', location: cleanLocation },
        ...extra,
      });

    const p = await prepareData(cfg(`file://${cleanFile}`, { testSet: { format: 'ntml', location: testFile } }));
    assert.deepEqual(records(p.train), records(train));
    assert.equal(p.cleanFit.labels.length + p.cleanHeldOut.labels.length, 10);
    assert.equal(p.cleanHeldOut.labels.length, 2);
    assert.deepEqual([...records(p.cleanFit), ...records(p.cleanHeldOut)].sort(), records(clean));
    assert.equal(p.test!.labels.length, 12);
    assert.equal(p.backdoorTest, undefined);
    assert.equal(p.poison, undefined);
    assert.equal(p.summary.poisonedCount, 0);
    assert.deepEqual(p.summary.shape, [8, 8, 3]);

    const bigFile = await write('clean16.ntds', encodeDataset(make(10, 2, 16)));
    await assert.rejects(prepareData(cfg(bigFile)), (e: Error) => e instanceof DatasetError && /^cleanSet: 16x16x3 .* does not match trainingSet \(8x8x3/.test(e.message));
    const fiveClasses = await write('clean5.ntds', encodeDataset(generateSyntheticDataset({ size: 10, numClasses: 5, height: 8, width: 8, channels: 3, seed: 2 })));
    // one label past the training set's classes: the message says where the labels came from
    await assert.rejects(
      prepareData(cfg(fiveClasses)),
      (e: Error) => e instanceof DatasetError && /^cleanSet: labels 0-4 in .*clean5\.ntds, but trainingSet has 4 classes \(0-3\): a label out of range/.test(e.message),
    );

    const full = encodeDataset(clean);
    const truncated = await write('truncated.ntds', full.subarray(0, full.length - 7));
    await assert.rejects(prepareData(cfg(truncated)), (e: Error) => e instanceof DatasetError && e.message.startsWith(`cleanSet (${truncated}): truncated`));
    await assert.rejects(
      prepareData(cfg(path.join(dir, 'missing.ntds'))),
      (e: Error) => e instanceof DatasetError && /^cleanSet: cannot read .*missing\.ntds \(ENOENT\)/.test(e.message),
    );
    await assert.rejects(prepareData(cfg('s3://bucket/clean.ntds')), (e: Error) => e instanceof DatasetError && /only local paths/.test(e.message));
    const oneImage = await write('one.ntds', encodeDataset(make(1, 2)));
    await assert.rejects(prepareData(cfg(oneImage)), (e: Error) => e instanceof DatasetError && /^cleanBudget: 1 clean samples/.test(e.message));
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});
