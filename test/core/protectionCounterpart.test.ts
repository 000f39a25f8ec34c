/**
 * The protection-mode view of an attack cell's data (bench/cleanCounterpart.ts
 * poisonedCounterpart, for bench/specs/ntml-protection-dev.yaml): the poisoned training set
 * byte for byte as the cell's standard training sees it, with the attacker's labels, the same
 * D_c, and a clear refusal for attacks that poison only while training.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { poisonedCounterpart, cleanCounterpart } from '../../bench/cleanCounterpart';
import { parsePurifyConfig } from '../../schemas/purify';
import { prepareData } from '../../core/experiment/prepareData';

const base = { mode: 'evaluation', tier: 'ci', data: { format: 'synthetic', trainSize: 600, testSize: 200 }, cleanBudget: 50 };

test('poisonedCounterpart: the training set the BadNets cell trains on (images and given labels), its D_c and test split', async () => {
  const view = await poisonedCounterpart(base, 2, { name: 'badnets' });
  const cell = await prepareData(parsePurifyConfig({ ...base, seed: 2, attack: { name: 'badnets' }, defense: { name: 'none' } }));
  assert.deepEqual(Buffer.from(view.train.images), Buffer.from(cell.train.images));
  assert.deepEqual(Array.from(view.train.labels), Array.from(cell.train.labels));
  assert.equal(view.poisoned, cell.poison!.poisonedIndices.length);
  assert.ok(view.poisoned > 0);
  assert.equal(view.clean.labels.length, cell.cleanFit.labels.length + cell.cleanHeldOut.labels.length);
  assert.deepEqual(Array.from(view.clean.labels), [...cell.cleanFit.labels, ...cell.cleanHeldOut.labels]);
  assert.equal(view.test.labels.length, cell.test!.labels.length);
  // the clean counterpart of the same seed holds the same images where nothing was poisoned
  const clean = await cleanCounterpart(base, 2);
  assert.equal(clean.train.labels.length, view.train.labels.length);
  const differing = Array.from(view.train.labels).filter((y, k) => y !== clean.train.labels[k]).length;
  assert.ok(differing > 0 && differing <= view.poisoned, `${differing} labels differ, ${view.poisoned} poisoned`);
});

test('poisonedCounterpart: a training-controlled attack is refused, naming the attack and what to use instead', async () => {
  await assert.rejects(poisonedCounterpart(base, 1, { name: 'wanet' }), /attack "wanet": poisons batches while it trains .*badnets, blended, sig/);
  await assert.rejects(poisonedCounterpart({ ...base, mode: 'protection' }, 1, { name: 'badnets' }), /^Error: base\.mode: /);
});
