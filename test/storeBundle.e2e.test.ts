/**
 * A sweep's state moved between stores on the real stack: a tiny ci-tier sweep runs against
 * store A (filesystem), `ntml store export` writes it to a bundle, `ntml store import` loads it
 * into a fresh store B (S3), and the same spec against B finishes with every cell reused. A
 * second bundle with only the stage-cache entries (no cell records) goes into a fresh store C:
 * there every cell runs again, and every cacheable stage is a cache hit on the imported entry.
 * A third bundle without prepareData (no data sets) into store D: the data is regenerated from
 * the seed and every later stage still hits.
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import type { Client } from '@temporalio/client';
import { quietRuntime, runSweepOnStore, testClient } from './support/temporal';
import { tinySweep } from './support/tinySweep';
import { FileArtifactStore, openStore, parseS3Location, s3OptionsFromEnv, type ArtifactStore } from '../store';
import { cachedStageNames } from '../activities/stageDeclarations';
import { storeExport, storeImport } from '../cli/storeBundle';
import type { SweepCellRecord, SweepOutcome } from '../workflows/contract';
import { captureIo, withStoreEnv } from './support/cliIo';

quietRuntime();

let client: Client;
let close: () => Promise<void>;
before(async () => ({ client, close } = await testClient()));
after(async () => close());

const name = `bundle-${Date.now().toString(36)}`;
const spec = tinySweep(name, { attack: [{ name: 'badnets', target: 5 }], defense: [{ name: 'ntml' }, { name: 'ft', steps: 20, rounds: 2 }], seed: [1] }, { mlEpochs: 3 });

const runSweep = (store: ArtifactStore, tag: string): Promise<SweepOutcome> => runSweepOnStore(client, store, spec, `bundle-${tag}`, `sweep-${name}-${tag}`);

async function cells(store: ArtifactStore): Promise<SweepCellRecord[]> {
  const keys = await store.listRecords(`sweeps/${name}/cells/`);
  return Promise.all(keys.map(async (k) => (await store.getRecord<SweepCellRecord>(k))!));
}

const cacheKeysOf = (r: SweepCellRecord) => (r.stages ?? []).filter((s) => s.cacheKey).map((s) => `${s.stage}:${s.cacheKey}`);

const { io } = captureIo();

/** A CLI handler against the store at `location` (as NTML_STORE), which must succeed. */
async function cli(location: string, f: () => Promise<number>): Promise<void> {
  assert.equal(await withStoreEnv(location, f), 0);
}

test('a sweep exported from one store and imported into a fresh one finishes there without computing anything', { timeout: 900_000 }, async () => {
  const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'ntml-bundle-e2e-'));
  const storeA = new FileArtifactStore(path.join(tmp, 'a'));
  const first = await runSweep(storeA, 'a');
  assert.equal(first.completed, 2, JSON.stringify(first.failed));
  const original = await cells(storeA);
  assert.equal(original.length, 2);
  // on a fresh store the first cell computed its stages: what follows must not be trivially cached
  assert.ok(original.some((r) => r.stages!.some((s) => s.cacheKey && s.cached !== true)), 'store A computed its stages');
  for (const r of original) assert.ok(cacheKeysOf(r).length >= 3, `cell ${r.cellId} names its cache entries`);

  // the whole sweep -> store B on S3: every cell is found finished
  const bundle = path.join(tmp, 'sweep.ntmlb');
  await cli(storeA.root, () => storeExport({ options: { sweep: name, out: bundle }, positionals: [], help: false }, io));
  const { bucket } = parseS3Location(process.env.NTML_STORE!);
  const locationB = `s3://${bucket}/bundle-e2e-${randomBytes(6).toString('hex')}`;
  await cli(locationB, () => storeImport({ options: {}, positionals: [bundle], help: false }, io));
  const storeB = openStore(locationB, { s3: s3OptionsFromEnv() });
  const second = await runSweep(storeB, 'b');
  assert.deepEqual({ completed: second.completed, reused: second.reused, failed: second.failed }, { completed: 2, reused: 2, failed: [] });
  assert.deepEqual(await cells(storeB), original, 'store B holds the cell records of store A, untouched');

  // only the stage-cache entries -> store C: every cell runs, every cacheable stage is a hit
  const stagesOnly = path.join(tmp, 'stages.ntmlb');
  await cli(storeA.root, () => storeExport({ options: { sweep: name, out: stagesOnly, stages: cachedStageNames.join(',') }, positionals: [], help: false }, io));
  const storeC = new FileArtifactStore(path.join(tmp, 'c'));
  await cli(storeC.root, () => storeImport({ options: {}, positionals: [stagesOnly], help: false }, io));
  const importedEntries = await storeC.listRecords('cache/');
  assert.equal((await cells(storeC)).length, 0, 'no cell records were imported');
  const third = await runSweep(storeC, 'c');
  assert.deepEqual({ completed: third.completed, reused: third.reused }, { completed: 2, reused: 0 });
  const rerun = await cells(storeC);
  for (const r of rerun) {
    const before = original.find((o) => o.cellId === r.cellId)!;
    assert.deepEqual(cacheKeysOf(r), cacheKeysOf(before), `cell ${r.cellId} used the same cache entries`);
    const missed = r.stages!.filter((s) => s.cacheKey && s.cached !== true).map((s) => s.stage);
    assert.deepEqual(missed, [], `cell ${r.cellId}: every cacheable stage came from the imported cache`);
    assert.deepEqual(r.metrics, before.metrics, `cell ${r.cellId}: the same results`);
  }
  assert.deepEqual(await storeC.listRecords('cache/'), importedEntries, 'no stage was computed and cached anew in store C');

  // without prepareData (no data sets or poisoned copies in the bundle): the data is regenerated
  // from the seed with the same digests, so every later stage still hits the imported cache
  const noData = path.join(tmp, 'no-data.ntmlb');
  const later = cachedStageNames.filter((s) => s !== 'prepareData');
  await cli(storeA.root, () => storeExport({ options: { sweep: name, out: noData, stages: later.join(',') }, positionals: [], help: false }, io));
  const storeD = new FileArtifactStore(path.join(tmp, 'd'));
  await cli(storeD.root, () => storeImport({ options: {}, positionals: [noData], help: false }, io));
  assert.deepEqual((await storeD.listRecords('cache/')).filter((k) => k.startsWith('cache/prepareData/')), []);
  const fourth = await runSweep(storeD, 'd');
  assert.equal(fourth.completed, 2, JSON.stringify(fourth.failed));
  for (const r of await cells(storeD)) {
    const before = original.find((o) => o.cellId === r.cellId)!;
    assert.deepEqual(cacheKeysOf(r), cacheKeysOf(before), `cell ${r.cellId} (store D) used the same cache entries`);
    const missed = r.stages!.filter((s) => s.cacheKey && s.cached !== true).map((s) => s.stage);
    assert.ok(missed.every((s) => s === 'prepareData'), `cell ${r.cellId} (store D): only the data was recomputed, not ${missed.join(', ')}`);
    assert.deepEqual(r.metrics, before.metrics);
  }

  const sizes = await Promise.all([bundle, stagesOnly, noData].map(async (f) => (await fsp.stat(f)).size));
  console.log(
    `bundles: whole sweep ${sizes[0]} bytes, stage cache only ${sizes[1]} bytes (${importedEntries.length} entries), without prepareData ${sizes[2]} bytes; ` +
      `store C cache hits: ${rerun.map((r) => `${r.axes.defense}: ${r.stages!.filter((s) => s.cached).map((s) => s.stage).join(', ')}`).join('; ')}`,
  );
});
