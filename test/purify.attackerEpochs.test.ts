/**
 * `attack.epochs` through the purify workflow on the real stack (ci tier, tiny): the attacker's
 * run (the standard-training stage of a training-controlled WaNet) trains and checkpoints the
 * attacker's epochs while the defender's recipe keeps its own, and the report's history says so.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { quietRuntime, runPurifyWorkflow } from './support/temporal';
import { storeFromEnv } from '../store';
import type { CheckpointEntry } from '../activities/checkpointing';
import { parsePurifyConfig } from '../schemas/purify';
import { learningRateAt } from '../core/train/sgd';

quietRuntime();

const config = {
  name: 'ci-wanet-epochs',
  mode: 'evaluation',
  tier: 'ci',
  seed: 1,
  data: { format: 'synthetic', trainSize: 200, testSize: 60, height: 16, width: 16 },
  attack: { name: 'wanet', s: 1, augment: { padding: 2 }, epochs: 3 },
  cleanBudget: 20,
  training: { epochs: 1, augment: { padding: 2, flip: false } },
  defense: { name: 'none' },
};

test("attack.epochs: the attacker's run trains and checkpoints its own epochs, the defender's recipe keeps its own", { timeout: 600_000 }, async () => {
  assert.equal(parsePurifyConfig(config).training.epochs, 1);
  // cache off: the checkpoints are filed under this run
  const { workflowId, report } = await runPurifyWorkflow('wanet-epochs', config, { cache: false });
  const store = storeFromEnv();
  const records = (await store.listRecords(`checkpoints/${workflowId}/`)).filter((k) => k.endsWith('-wanet'));
  assert.equal(records.length, 1, `one WaNet checkpoint record: ${JSON.stringify(records)}`);
  const entries = (await store.getRecord<CheckpointEntry[]>(records[0]))!;
  assert.deepEqual(entries.map((e) => e.epoch), [1, 2, 3], "a checkpoint after each of the attacker's 3 epochs");
  assert.deepEqual(report.histories.standardTraining.map((h) => h.epoch), [1, 2, 3]);
  // 180 training images (200 less the 20-image clean reserve), ci batch 64: 3 batches an epoch;
  // each epoch's last rate is the ci recipe's cosine from 0.05 over all 9 steps of the attacker's run
  const rates = report.histories.standardTraining.map((h) => h.learningRate);
  rates.forEach((r, e) => assert.ok(Math.abs(r - learningRateAt('cosine', 0.05, e * 3 + 2, 9)) < 1e-12, `epoch ${e + 1}: ${rates.join(', ')}`));
});
