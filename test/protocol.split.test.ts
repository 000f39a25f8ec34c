/**
 * The protocol's data split on the real stack (docs/protocol.md): a purify run stores its
 * prepared data (the training set the stages learn from, D_c's fitting part and its held-out
 * slice) through the prepareData stage; read back from S3, no D_c image, fitting or held out,
 * is in the stored training set, and the report's data line says the clean set lies outside it.
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

quietRuntime();

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

  // the stage's stored output, found by its summary among the stored prepareData entries
  const store = storeFromEnv();
  const keys = await store.listRecords('cache/prepareData/');
  let ours: DataRefs | undefined;
  for (const key of keys) {
    const entry = await store.getRecord<CacheEntry<DataRefs>>(key);
    if (entry?.version === prepareDataStage.version && JSON.stringify(entry.output.summary) === JSON.stringify(report.data)) ours = entry.output;
  }
  assert.ok(ours, `no stored prepareData output matches the report's data summary among ${keys.length} entries`);
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
