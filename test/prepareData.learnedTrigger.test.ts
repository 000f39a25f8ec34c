/**
 * A learned trigger filed under a key of what it reads (activities/learnedTriggerCache.ts): the
 * real prepareData activity on the test run's S3 store (Temporal's activity test environment),
 * ci-sized synthetic data and a tiny Narcissus. Another poisoning rate or test multiplier poisons
 * with the stored trigger (no optimisation round) and gives what a fresh run gives; another
 * surrogate setting, another seed or a tampered entry learns again. The backfill files the
 * trigger of a completed cell recorded before the entries existed; export and import carry it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { prepareData } from '../activities/purify';
import { artifactStore } from '../activities/context';
import { findLearnedTrigger, learnedTriggerRecordKey, type LearnedTriggerEntry } from '../activities/learnedTriggerCache';
import { encodePerturbation } from '../core/attacks/narcissus';
import { openStore, parseS3Location, s3OptionsFromEnv } from '../store/index';
import { storeExport, storeImport } from '../cli/storeBundle';
import { backfillLearnedTriggers } from '../bench/learnedTriggers';
import { collectBenchState } from '../bench/stateBundle';
import type { DataRefs, SweepCellRecord } from '../workflows/contract';
import { captureIo, withStoreEnv } from './support/cliIo';

type Prepared = DataRefs & { cached: boolean; cacheKey: string };

/** ci-sized synthetic data, Narcissus at a mechanics-only budget (attackNarcissus.test.ts 'through prepareData') */
function config(seed: number, attack: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    mode: 'evaluation',
    tier: 'ci',
    seed,
    data: { format: 'synthetic', trainSize: 200, testSize: 40, height: 8, width: 8, numClasses: 4 },
    attack: { name: 'narcissus', rate: 0.05, surrogateArch: 'tinyCnn', surrogateEpochs: 1, warmupRounds: 1, triggerRounds: 4, pood: { format: 'synthetic', size: 100, numClasses: 3 }, ...attack },
    cleanBudget: 20,
  };
}

/** Runs the activity; `rounds`: the trigger optimisation rounds it announced in its heartbeats. */
let runs = 0;
async function run(cfg: Record<string, unknown>, cache = true): Promise<{ out: Prepared; rounds: number }> {
  // a workflow of its own each: a cache-off run's checkpoints are its run's, not the next one's to resume
  const workflowId = `learned-trigger-run-${++runs}`;
  const env = new MockActivityEnvironment({ workflowExecution: { workflowId, runId: randomUUID() } });
  let rounds = 0;
  env.on('heartbeat', (d: unknown) => {
    if (d && typeof d === 'object' && 'round' in d) rounds++;
  });
  const out = (await env.run(prepareData, { config: cfg, cache })) as unknown as Prepared;
  return { out, rounds };
}

test('prepareData: a learned trigger is reused at another rate and test multiplier (no round optimised) and equals a fresh run there', { timeout: 300_000 }, async () => {
  const store = artifactStore();
  const learned = await run(config(21));
  const triggerKey = learned.out.poison!.triggerKey!;
  assert.ok(learned.rounds > 0, 'the first run optimised the trigger');
  assert.equal(learned.out.poison!.triggerReusedFrom, undefined);
  const entry = await findLearnedTrigger(store, triggerKey);
  assert.ok(entry, 'the finished trigger is filed under its own key');
  assert.equal(entry.madeBy.key, learned.out.cacheKey, 'naming the prepareData computation that learned it');
  assert.equal(entry.madeBy.workflowId, 'learned-trigger-run-1');
  assert.deepEqual(entry.triggerParameters, learned.out.poison!.triggerParameters);

  const reused = await run(config(21, { rate: 0.1 }));
  assert.notEqual(reused.out.cacheKey, learned.out.cacheKey, 'another rate is another prepareData computation');
  assert.equal(reused.out.cached, false);
  assert.equal(reused.rounds, 0, 'no optimisation round ran');
  assert.equal(reused.out.poison!.triggerKey, triggerKey);
  assert.equal(reused.out.poison!.triggerReusedFrom?.key, learned.out.cacheKey);
  assert.match(reused.out.summary.triggerReusedFrom ?? '', /learnedTrigger [0-9a-f]{12}/);
  assert.notEqual(reused.out.poison!.poisonedCount, learned.out.poison!.poisonedCount);
  assert.equal((await store.listRecords(`checkpoints/stage/${reused.out.cacheKey}/`)).length, 0, 'no trigger checkpoint filed');

  // the reference: the same config learned from scratch (cache off: no lookup)
  const fresh = await run(config(21, { rate: 0.1 }), false);
  assert.ok(fresh.rounds > 0 && fresh.out.resumedFromEpoch === undefined, 'the reference learned from round 0');
  assert.equal(fresh.out.poison!.triggerReusedFrom, undefined);
  assert.deepEqual(reused.out.poison!.triggerParameters, fresh.out.poison!.triggerParameters);
  assert.equal(reused.out.train.sha256, fresh.out.train.sha256, 'the same poisoned training set');
  assert.equal(reused.out.poison!.poisonedIndices.sha256, fresh.out.poison!.poisonedIndices.sha256);
  assert.equal(reused.out.backdoorTest!.sha256, fresh.out.backdoorTest!.sha256);

  // the test multiplier is not read in learning either; the record says the config's own
  const x5 = await run(config(21, { testMultiplier: 5 }));
  const x5fresh = await run(config(21, { testMultiplier: 5 }), false);
  assert.equal(x5.rounds, 0);
  assert.ok(x5fresh.rounds > 0 && x5fresh.out.resumedFromEpoch === undefined, 'the reference learned from round 0');
  assert.equal(x5.out.poison!.triggerParameters.testMultiplier, 5);
  assert.deepEqual(x5.out.poison!.triggerParameters, x5fresh.out.poison!.triggerParameters);
  assert.equal(x5.out.backdoorTest!.sha256, x5fresh.out.backdoorTest!.sha256);
  assert.notEqual(x5.out.backdoorTest!.sha256, learned.out.backdoorTest!.sha256, 'magnified x5, not x3');
});

test('prepareData: another surrogate setting, another seed or a tampered entry learns the trigger again', { timeout: 300_000 }, async () => {
  const store = artifactStore();
  const learned = await run(config(22));
  const triggerKey = learned.out.poison!.triggerKey!;
  for (const [what, cfg] of [
    ['surrogateEpochs 2', config(22, { surrogateEpochs: 2, rate: 0.1 })],
    ['seed 23', config(23, { rate: 0.1 })],
  ] as const) {
    const other = await run(cfg);
    assert.ok(other.rounds > 0, `${what}: optimised`);
    assert.notEqual(other.out.poison!.triggerKey, triggerKey, `${what}: another trigger key`);
    assert.equal(other.out.poison!.triggerReusedFrom, undefined);
  }

  // an entry whose trigger no longer matches its digest is not used, and is replaced
  const recordKey = learnedTriggerRecordKey(triggerKey);
  const entry = (await store.getRecord<LearnedTriggerEntry>(recordKey))!;
  const planted = encodePerturbation(new Float32Array(8 * 8 * 3).fill(4 / 255));
  await store.putRecord(recordKey, { ...entry, triggerParameters: { ...entry.triggerParameters, perturbation: planted } });
  const relearned = await run(config(22, { rate: 0.1 }));
  assert.ok(relearned.rounds > 0, 'the tampered trigger was not used');
  assert.equal(relearned.out.poison!.triggerReusedFrom, undefined);
  assert.equal(relearned.out.poison!.triggerParameters.perturbation, learned.out.poison!.triggerParameters.perturbation);
  assert.equal((await findLearnedTrigger(store, triggerKey))?.triggerParameters.perturbation, learned.out.poison!.triggerParameters.perturbation, 'the entry was written again');
});

test('backfill files the trigger of a completed cell recorded before the entries existed; a later run reuses it; export and import carry it', { timeout: 300_000 }, async () => {
  const store = artifactStore();
  const sweep = `learned-trigger-${randomBytes(4).toString('hex')}`;
  const cellConfig = config(24);
  const cell = await run(cellConfig);
  const triggerKey = cell.out.poison!.triggerKey!;
  // as a store written before this change holds it: the prepareData entry, no trigger entry
  await store.deleteRecord(learnedTriggerRecordKey(triggerKey));
  const record: SweepCellRecord = {
    sweep,
    cellId: 'narcissus-s24',
    axes: { attack: 'narcissus', defense: 'ntml', seed: 24, cleanBudget: '20', model: 'tinyCnn' },
    config: cellConfig,
    status: 'completed',
    workflowId: `${sweep}-narcissus-s24`,
    startedAt: 0,
    endedAt: 1,
    stages: [{ stage: 'prepareData', seconds: 1, cacheKey: cell.out.cacheKey }],
  };
  await store.putRecord(`sweeps/${sweep}/cells/${record.cellId}`, record);
  // a failed cell is not backfilled
  await store.putRecord(`sweeps/${sweep}/cells/failed`, { ...record, cellId: 'failed', status: 'failed', config: config(25) });

  assert.deepEqual(await backfillLearnedTriggers(store, sweep), [{ cellId: 'narcissus-s24', outcome: 'written', detail: learnedTriggerRecordKey(triggerKey) }]);
  assert.deepEqual(await backfillLearnedTriggers(store, sweep), [{ cellId: 'narcissus-s24', outcome: 'present', detail: learnedTriggerRecordKey(triggerKey) }], 'idempotent');
  const entry = await findLearnedTrigger(store, triggerKey);
  assert.equal(entry?.madeBy.cellId, 'narcissus-s24');
  assert.equal(entry?.madeBy.key, cell.out.cacheKey);

  const later = await run(config(24, { rate: 0.1 }));
  assert.equal(later.rounds, 0, 'the backfilled trigger was reused');
  assert.equal(later.out.poison!.triggerReusedFrom?.cellId, 'narcissus-s24');
  assert.match(later.out.summary.triggerReusedFrom ?? '', /cell narcissus-s24 of sweep learned-trigger-/);

  // a cell whose data is not where its config says (another machine): skipped, not guessed
  const moved = { ...record, cellId: 'moved', config: { ...cellConfig, data: { format: 'cifar10', path: path.join(tmpdir(), 'no-such-cifar') } } };
  await store.putRecord(`sweeps/${sweep}/cells/moved`, moved);
  const lines = await backfillLearnedTriggers(store, sweep);
  assert.equal(lines.find((l) => l.cellId === 'moved')?.outcome, 'skipped');
  assert.match(lines.find((l) => l.cellId === 'moved')!.detail, /not the recorded/);
  await store.deleteRecord(`sweeps/${sweep}/cells/moved`);

  // ntml store export carries the cell's trigger entry; import restores it in a fresh store, verifying
  const dir = await fsp.mkdtemp(path.join(tmpdir(), 'ntml-learned-trigger-'));
  const file = path.join(dir, 'sweep.ntmlb');
  const location = process.env.NTML_STORE!;
  const exported = captureIo();
  await withStoreEnv(location, () => storeExport({ options: { sweep, out: file }, positionals: [], help: false }, exported.io));
  assert.match(exported.printed(), /learnedTrigger 1/);
  const { bucket } = parseS3Location(location);
  const fresh = `s3://${bucket}/learned-trigger-import-${randomBytes(6).toString('hex')}`;
  await withStoreEnv(fresh, () => storeImport({ options: {}, positionals: [file], help: false }, captureIo().io));
  const imported = await findLearnedTrigger(openStore(fresh, { s3: s3OptionsFromEnv() }), triggerKey);
  assert.deepEqual(imported?.triggerParameters, entry?.triggerParameters);

  // and the bench state (bench/stateBundle.ts, no prepareData entries in it) carries it too
  const state = await collectBenchState(store, sweep);
  assert.ok(state.content.records.some((r) => r.key === learnedTriggerRecordKey(triggerKey)));
  assert.ok(!state.content.records.some((r) => r.key.startsWith('cache/prepareData/')));
  await fsp.rm(dir, { recursive: true, force: true });
});
