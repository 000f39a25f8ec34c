/**
 * The protocol's data split on the real stack (docs/protocol.md): a purify run stores its
 * prepared data (the training set the stages learn from, D_c's fitting part and its held-out
 * slice) through the prepareData stage; read back from S3, no D_c image, fitting or held out,
 * is in the stored training set, and the report's data line says the clean set lies outside it.
 * The stage also stores where each record came from (DataRefs.sourceIndices): read back, no D_c
 * index and no held-out index is among the training set's, at |D_c| = 100 and at a fraction.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ciConfig, quietRuntime, runPurifyWorkflow } from './support/temporal';
import { storeFromEnv } from '../store';
import { decodeDatasetWithMeta } from '../core/data/codec';
import { imageBytes, type ImageDataset } from '../core/data/dataset';
import type { CacheEntry } from '../activities/stageCache';
import { prepareDataStage } from '../activities/stageDeclarations';
import type { DataRefs } from '../workflows/contract';
import type { SourceIndices } from '../core/experiment/prepareData';
import type { PurifyReport } from '../core/report/records';

quietRuntime();

/** The prepareData stage's stored output of a run, found by its summary among the stored entries. */
async function storedPreparedData(report: PurifyReport): Promise<DataRefs> {
  const store = storeFromEnv();
  const keys = await store.listRecords('cache/prepareData/');
  let ours: DataRefs | undefined;
  for (const key of keys) {
    const entry = await store.getRecord<CacheEntry<DataRefs>>(key);
    if (entry?.version === prepareDataStage.version && JSON.stringify(entry.output.summary) === JSON.stringify(report.data)) ours = entry.output;
  }
  assert.ok(ours, `no stored prepareData output matches the report's data summary among ${keys.length} entries`);
  return ours;
}

const records = (ds: ImageDataset) => {
  const per = imageBytes(ds);
  return Array.from({ length: ds.labels.length }, (_, i) => Buffer.from(ds.images.subarray(i * per, (i + 1) * per)).toString('hex'));
};

test('stored prepared data: D_c and its held-out slice are not in the training set the stages learn from', { timeout: 600_000 }, async () => {
  // a small run of its own (its own seed and sizes), undefended: prepareData and standard training run
  const config = ciConfig({
    name: 'protocol-split',
    seed: 17,
    data: { format: 'synthetic', trainSize: 600, testSize: 100 },
    cleanBudget: 40,
    cleanReserve: { fraction: 0.1 },
    defense: { name: 'none' },
  });
  const { report, markdown } = await runPurifyWorkflow('protocol-split', config);
  assert.equal(report.data.trainSize, 540, '600 images minus the 60-image reserve');
  assert.equal(report.data.cleanReserve, 60);
  assert.equal(report.data.cleanSetOutsideTraining, true);
  assert.equal(report.data.poisonedCount, 54, 'the rate is a fraction of the training set');
  assert.match(markdown, /clean set 40 \(32 fit \+ 8 held out; drawn first from a 60-image clean reserve that is not part of the training set\)/);

  const store = storeFromEnv();
  const ours = await storedPreparedData(report);
  const load = async (ref: DataRefs['train']) => decodeDatasetWithMeta(await store.get(ref), ref.uri).dataset;
  const train = await load(ours.train);
  const fit = await load(ours.cleanFit);
  const heldOut = await load(ours.cleanHeldOut);
  assert.equal(train.labels.length, 540);
  assert.equal(fit.labels.length + heldOut.labels.length, 40);
  const inTraining = new Set(records(train));
  for (const [name, ds] of [['fitting', fit], ['held-out', heldOut]] as const) {
    const leaked = records(ds).filter((r) => inTraining.has(r)).length;
    assert.equal(leaked, 0, `${leaked} ${name} images of D_c are in the stored training set`);
  }
  const fitRecords = new Set(records(fit));
  assert.equal(records(heldOut).filter((r) => fitRecords.has(r)).length, 0, 'the held-out slice overlaps the fitting part');
});

test('stored source indices: no D_c index and no held-out index reaches a training stage (|D_c| = 100 and 5%)', { timeout: 600_000 }, async () => {
  const store = storeFromEnv();
  // 2,400 images: |D_c| = 100 fills its own 120-image reserve (5%), and 5% is 120 images drawn from it
  for (const cleanBudget of [100, { fraction: 0.05 }] as const) {
    const what = `cleanBudget ${JSON.stringify(cleanBudget)}`;
    const config = ciConfig({
      name: 'protocol-indices',
      seed: 23,
      data: { format: 'synthetic', trainSize: 2400, testSize: 100 },
      training: { epochs: 1 },
      cleanBudget,
      defense: { name: 'none' },
    });
    const { report } = await runPurifyWorkflow('protocol-indices', config);
    const refs = await storedPreparedData(report);
    assert.ok(refs.sourceIndices, `${what}: the prepareData stage stored no source indices`);
    const idx = JSON.parse(Buffer.from(await store.get(refs.sourceIndices)).toString('utf8')) as SourceIndices;

    assert.equal(idx.training.length, report.data.trainSize, `${what}: one source index per training record`);
    assert.equal(idx.cleanFit.length, report.data.cleanFit, `${what}: one source index per fitting record`);
    assert.equal(idx.cleanHeldOut.length, report.data.cleanHeldOut, `${what}: one source index per held-out record`);
    assert.equal(idx.cleanFit.length + idx.cleanHeldOut.length, cleanBudget === 100 ? 100 : 120, `${what}: |D_c|`);
    assert.equal(idx.training.length, 2400 - (report.data.cleanReserve ?? NaN), `${what}: the training set is the split minus the reserve`);
    const all = [...idx.training, ...idx.cleanFit, ...idx.cleanHeldOut];
    assert.ok(all.every((i) => Number.isInteger(i) && i >= 0 && i < 2400), `${what}: every index lies in the loaded 2,400-image split`);

    const training = new Set(idx.training);
    assert.equal(training.size, idx.training.length, `${what}: a training index repeats`);
    for (const [name, list] of [['cleanFit', idx.cleanFit], ['cleanHeldOut', idx.cleanHeldOut]] as const) {
      const leaked = list.filter((i) => training.has(i));
      assert.deepEqual(leaked, [], `${what}: ${name} source indices in the training set`);
    }
    const fit = new Set(idx.cleanFit);
    assert.deepEqual(idx.cleanHeldOut.filter((i) => fit.has(i)), [], `${what}: the held-out slice overlaps the fitting part`);

    // the stored training set is the one those indices name: its size and the poison count follow it
    const train = decodeDatasetWithMeta(await store.get(refs.train), refs.train.uri).dataset;
    assert.equal(train.labels.length, idx.training.length, `${what}: stored training set and its indices differ in length`);
  }
});
