/**
 * prepareData's stage key hashes the data's content, not the folder's path (issue 21): a
 * bench/state bundle imported on a machine whose CIFAR-10 copy lies elsewhere finds the same
 * key, so Narcissus's trigger, optimised inside prepareData and checkpointed under that key,
 * continues there. The real activity on the real S3 store (Temporal's activity test
 * environment): the same bytes at a second path are a cache hit with the same outputs, one
 * changed byte is another key and a recompute. Synthetic data names no folder: its key is the
 * one it had before content keys.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { prepareData } from '../activities/purify';
import { prepareDataStage } from '../activities/stageDeclarations';
import { stageKey } from '../activities/stageCache';
import { artifactStore } from '../activities/context';
import { CIFAR10_RECORD_BYTES, CIFAR10_TEST_FILES, CIFAR10_TRAIN_FILES } from '../core/data/cifar10';
import { canonicalJson } from '../core/data/codec';
import { declaredValues } from '../core/pipeline/configReads';
import { parsePurifyConfig } from '../schemas/purify';
import type { DataRefs } from '../workflows/contract';

const PER_BATCH = 40;

/** A real (tiny) cifar-10-batches-bin: PER_BATCH records per file, labels round robin, random pixels. */
async function cifarFolder(dir: string): Promise<void> {
  await fsp.mkdir(dir, { recursive: true });
  for (const f of [...CIFAR10_TRAIN_FILES, ...CIFAR10_TEST_FILES]) {
    const bytes = randomBytes(PER_BATCH * CIFAR10_RECORD_BYTES);
    for (let r = 0; r < PER_BATCH; r++) bytes[r * CIFAR10_RECORD_BYTES] = r % 10;
    await fsp.writeFile(path.join(dir, f), bytes);
  }
}

const config = (dataPath: string) => ({
  mode: 'evaluation',
  tier: 'ci',
  seed: 3,
  data: { format: 'cifar10', path: dataPath },
  attack: { name: 'badnets', target: 0, rate: 0.1 },
  cleanBudget: 10,
  cleanReserve: 20,
});

type Prepared = DataRefs & { cached: boolean; cacheKey: string };

test('prepareData: the same CIFAR-10 bytes at another path hit the cache; one changed byte is another key', { timeout: 300_000 }, async () => {
  const root = await fsp.mkdtemp(path.join(tmpdir(), 'ntml-prepare-content-'));
  const a = path.join(root, 'machine-a', 'cifar-10-batches-bin');
  const b = path.join(root, 'elsewhere', 'b', 'cifar-10-batches-bin');
  await cifarFolder(a);
  await fsp.cp(a, b, { recursive: true });
  const env = new MockActivityEnvironment();
  const run = async (p: string): Promise<Prepared> => (await env.run(prepareData, { config: config(p) })) as unknown as Prepared;

  const first = await run(a);
  assert.equal(first.cached, false, 'fresh bytes: computed');
  assert.ok(first.summary.trainSize > 0);
  const second = await run(b);
  assert.equal(second.cached, true, 'the same bytes at another path: a cache hit, no recompute');
  assert.equal(second.cacheKey, first.cacheKey);
  assert.equal(second.train.sha256, first.train.sha256);
  assert.equal(second.poison?.poisonedIndices.sha256, first.poison?.poisonedIndices.sha256);
  // the entry is the one the first run stored, under the shared key
  assert.ok(await artifactStore().getRecord(`cache/prepareData/${first.cacheKey}`));

  // one pixel byte of b's test batch changed: other content, other key, computed again
  const file = path.join(b, CIFAR10_TEST_FILES[0]);
  const bytes = await fsp.readFile(file);
  bytes[1 + 5] ^= 0xff;
  await fsp.writeFile(file, bytes);
  const changed = await run(b);
  assert.notEqual(changed.cacheKey, first.cacheKey);
  assert.equal(changed.cached, false);
  // and the original bytes still give the original key
  assert.equal((await run(a)).cacheKey, first.cacheKey);
  await fsp.rm(root, { recursive: true, force: true });
});

test("prepareData: Narcissus's trigger checkpoints, filed under the key, are found with the same bytes at another path, and those filed under the former path-hashed key still are", { timeout: 300_000 }, async () => {
  const root = await fsp.mkdtemp(path.join(tmpdir(), 'ntml-prepare-narcissus-'));
  const a = path.join(root, 'machine-a', 'cifar-10-batches-bin');
  const b = path.join(root, 'machine-b', 'cifar-10-batches-bin');
  await cifarFolder(a);
  await fsp.cp(a, b, { recursive: true });
  const narcissus = (p: string) => ({
    ...config(p),
    attack: { name: 'narcissus', target: 0, rate: 0.05, surrogateArch: 'tinyCnn', surrogateEpochs: 1, warmupRounds: 1, triggerRounds: 20, batchSize: 32, pood: { format: 'synthetic', size: 100, numClasses: 4 } },
  });
  const env = new MockActivityEnvironment();
  const run = async (p: string): Promise<Prepared> => (await env.run(prepareData, { config: narcissus(p) })) as unknown as Prepared;
  const first = await run(a);
  assert.equal(first.cached, false);
  const record = (await artifactStore().listRecords(`checkpoints/stage/${first.cacheKey}/`)).find((k) => k.endsWith('/poisonTrigger'));
  assert.ok(record, 'the trigger optimisation checkpointed under the stage key');
  const rounds = Math.max(...(await artifactStore().getRecord<Array<{ epoch: number }>>(record))!.map((e) => e.epoch));
  // the stage unfinished (as a bundle's stage in progress arrives on a new machine): only its
  // checkpoints remain, neither its entry nor the finished trigger's
  await artifactStore().deleteRecord(`cache/prepareData/${first.cacheKey}`);
  await artifactStore().deleteRecord(`cache/learnedTrigger/${first.poison!.triggerKey}`);
  const second = await run(b);
  assert.equal(second.cacheKey, first.cacheKey);
  assert.equal(second.cached, false);
  assert.equal(second.resumedFromEpoch, rounds, 'the trigger continued from its newest round, not from round 0');
  assert.deepEqual(second.poison?.triggerParameters, first.poison?.triggerParameters, 'the same trigger');
  assert.equal(second.train.sha256, first.train.sha256);

  // a store written before content keys: the trigger's checkpoints under the path-hashed key alone
  const store = artifactStore();
  const pathKeyed = stageKey(prepareDataStage, parsePurifyConfig(narcissus(b)), { config: {} });
  assert.notEqual(pathKeyed, first.cacheKey);
  await store.putRecord(`checkpoints/stage/${pathKeyed}/poisonTrigger`, await store.getRecord(record));
  await store.deleteRecord(record);
  await store.deleteRecord(`cache/prepareData/${first.cacheKey}`);
  await store.deleteRecord(`cache/learnedTrigger/${first.poison!.triggerKey}`);
  const third = await run(b);
  assert.equal(third.resumedFromEpoch, rounds, 'resumed from the checkpoints filed under the former, path-hashed key');
  assert.deepEqual(third.poison?.triggerParameters, first.poison?.triggerParameters);
  await fsp.rm(root, { recursive: true, force: true });
});

test('prepareData: data that names no folder (synthetic) keeps the key of its declared reads alone', async () => {
  const cfg = parsePurifyConfig({ mode: 'evaluation', tier: 'ci', data: { format: 'synthetic' }, attack: { name: 'badnets' } });
  assert.deepEqual(await prepareDataStage.contentKeyed!(cfg), {});
  // the key material as it was before content keys: stage, version, declared values, no inputs or params
  const before = createHash('sha256')
    .update(canonicalJson({ stage: 'prepareData', version: prepareDataStage.version, config: declaredValues(cfg, prepareDataStage.reads), inputs: {}, params: {} }))
    .digest('hex');
  assert.equal(stageKey(prepareDataStage, cfg, { config: {} }, await prepareDataStage.contentKeyed!(cfg)), before);
});

test('prepareData: a CIFAR-10 folder that is not there keys by its path (the loader then names the missing folder)', async () => {
  const missing = path.join(tmpdir(), `ntml-no-such-${randomBytes(4).toString('hex')}`, 'cifar-10-batches-bin');
  const cfg = parsePurifyConfig(config(missing));
  assert.deepEqual(await prepareDataStage.contentKeyed!(cfg), {});
});
