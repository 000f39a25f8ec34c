/**
 * Input-Aware's attacker run carried by bench state to a fresh store, on the real stack (issue 21):
 * its cache entry stays out of the bundle (its output references the poisoned training set and
 * the clean splits), and its final checkpoint comes in its place. A one-cell ci-tier sweep
 * (Input-Aware, FT) runs on store A; bench state is exported from it and imported into a fresh
 * store B (another S3 prefix). On B the same cells run under another sweep name (the same spec
 * would find its imported cell record finished and run nothing; a new cell for the same attack
 * and seed on a new machine is this case): the attacker run resumes at its last epoch and trains
 * no epoch, its regenerated outputs have the original digests, so FT's imported entry is hit,
 * and the cell's metrics and purified model equal store A's. The checkpoint the bundle carries is
 * cut (bench/finishedCheckpoints.ts): the generators only, no optimiser state, the classifier by
 * reference to the backdoored model; a tampered one is refused naming it; a bundle of the older
 * form, with the full final checkpoint, still imports and gives the same cell (store C).
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
import { tinySweep, tinySweepBase } from './support/tinySweep';
import { collectBundle, decodeBundle, encodeBundle, importBundle, openStore, parseS3Location, s3OptionsFromEnv, type ArtifactStore } from '../store';
import { decodeCheckpoint, encodeCheckpoint } from '../core/train/checkpoint';
import { exportBenchState } from '../bench/stateBundle';
import type { CheckpointEntry } from '../activities/checkpointing';
import type { CacheEntry } from '../activities/stageCache';
import type { SweepCellRecord, SweepOutcome, TrainedModel } from '../workflows/contract';

quietRuntime();

let client: Client;
let close: () => Promise<void>;
before(async () => ({ client, close } = await testClient()));
after(async () => close());

const MASK_EPOCHS = 2;
const EPOCHS = 2;
const tag = Date.now().toString(36);
const grid = {
  attack: [{ name: 'inputaware', target: 0, rate: 0.1, maskEpochs: MASK_EPOCHS, generatorChannels: [8, 16, 32] }],
  defense: [{ name: 'ft' as const, steps: 10, rounds: 2 }],
  seed: [1],
};
/** the tiny sweep at 16x16 (Input-Aware's generators pool twice by 2), without NT-ML stages */
function spec(name: string) {
  const s = tinySweep(name, grid, { epochs: EPOCHS, mlEpochs: null, concurrency: 1 });
  return { ...s, base: { ...tinySweepBase({ epochs: EPOCHS, mlEpochs: null }), data: { format: 'synthetic', trainSize: 400, testSize: 200, height: 16, width: 16 } } };
}

const { bucket } = parseS3Location(process.env.NTML_STORE ?? 's3://missing/');
const open = (t: string) => openStore(`s3://${bucket}/iad-state-${t}-${randomBytes(6).toString('hex')}`, { s3: s3OptionsFromEnv() });

const sweepOutcome = (store: ArtifactStore, name: string): Promise<SweepOutcome> => runSweepOnStore(client, store, spec(name), `iad-state-${name}`, `sweep-${name}`);

async function runSweep(store: ArtifactStore, name: string): Promise<SweepCellRecord> {
  const outcome = await sweepOutcome(store, name);
  assert.equal(outcome.completed, 1, JSON.stringify(outcome.failed));
  const keys = await store.listRecords(`sweeps/${name}/cells/`);
  assert.equal(keys.length, 1);
  return (await store.getRecord<SweepCellRecord>(keys[0]))!;
}

const stageOf = (r: SweepCellRecord, stage: string) => r.stages!.find((s) => s.stage === stage)!;

test('bench state carries Input-Aware\'s final checkpoint: a fresh store trains no attacker epoch and ends with the same cell', { timeout: 900_000 }, async () => {
  assert.ok(process.env.NTML_STORE?.startsWith('s3://'), 'run through test/support/runTests.js: it starts the S3 server');
  const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'ntml-iad-state-'));

  // store A: the sitting that trained the attacker
  const storeA = open('a');
  const first = await runSweep(storeA, `iad-a-${tag}`);
  const standardKey = stageOf(first, 'standardTraining').cacheKey!;
  const attackerRecord = `checkpoints/stage/${standardKey}/inputaware`;
  const listA = (await storeA.getRecord<CheckpointEntry[]>(attackerRecord))!;
  assert.deepEqual(listA.map((e) => e.epoch), [1, 2, 3, 4], `${MASK_EPOCHS} mask + ${EPOCHS} joint epochs, checkpoints kept after the stage finished`);
  const entryA = (await storeA.getRecord<CacheEntry<TrainedModel>>(`cache/standardTraining/${standardKey}`))!;

  // the export: the attacker run's entry left out, its last checkpoint in its place, no data set
  const bundle = path.join(tmp, 'state.ntmlb');
  const exported = await exportBenchState(storeA, `iad-a-${tag}`, bundle);
  assert.deepEqual(exported.leftOut, [`cache/standardTraining/${standardKey}`]);
  const final = listA.at(-1)!;
  const [cut] = exported.leftOutCheckpoints;
  assert.deepEqual({ ...cut, sha256: undefined, bytes: undefined }, { record: attackerRecord, entry: `cache/standardTraining/${standardKey}`, epoch: MASK_EPOCHS + EPOCHS, sha256: undefined, bytes: undefined });
  const fileBytes = await fsp.readFile(bundle);
  const content = await decodeBundle(fileBytes, bundle);
  assert.ok(!content.manifest.records.some((r) => r.key.startsWith('cache/prepareData/') || r.key === `cache/standardTraining/${standardKey}`));
  assert.ok(!content.manifest.artifacts.some((a) => a.sha256 === entryA.output.data!.train.sha256), 'not the poisoned training set');
  // the final checkpoint cut to what materialising the outputs needs
  const fullFinal = decodeCheckpoint(await storeA.get(final.checkpoint), 'full');
  const carried = content.artifacts.find((a) => a.sha256 === cut.sha256)!;
  const slim = decodeCheckpoint(carried.data, 'cut');
  assert.deepEqual(Object.keys(fullFinal.arrays).sort(), ['mask', 'model', 'optimizer:model', 'optimizer:pattern', 'pattern']);
  assert.deepEqual(Object.keys(slim.arrays).sort(), ['mask', 'pattern'], 'the generators; no optimiser state; the classifier referenced');
  assert.equal(slim.finished, true);
  assert.equal(slim.epoch, final.epoch);
  assert.deepEqual(slim.rngState, fullFinal.rngState);
  assert.deepEqual(slim.extra, fullFinal.extra, 'the RNG positions and histories of the run');
  assert.equal(slim.weightsFrom!.model.sha256, entryA.output.model.sha256, 'the backdoored model, which the bundle carries anyway');
  assert.ok(content.manifest.artifacts.some((a) => a.sha256 === entryA.output.model.sha256));
  assert.ok(!content.manifest.artifacts.some((a) => a.sha256 === final.checkpoint.sha256), 'not the full checkpoint');
  assert.ok(cut.bytes < final.checkpoint.bytes / 2, `${cut.bytes} of ${final.checkpoint.bytes} bytes`);

  // tampered in transit: refused, naming the checkpoint, before anything is written
  const tampered = { ...content, artifacts: content.artifacts.map((a) => (a.sha256 === cut.sha256 ? { ...a, data: Uint8Array.from(a.data, (b, i) => (i === a.data.length - 1 ? b ^ 1 : b)) } : a)) };
  await assert.rejects(decodeBundle(encodeBundle(tampered), 'tampered.ntmlb'), (e: Error) =>
    e.message.includes(`artifact ${cut.sha256} (the epoch ${final.epoch} final checkpoint of ${attackerRecord}) does not match its sha256`),
  );

  // store B, fresh: the import, then the same cells
  const storeB = open('b');
  await importBundle(storeB, content);
  const imported = await storeB.getRecord<CheckpointEntry[]>(attackerRecord);
  assert.deepEqual(imported!.map((e) => [e.epoch, e.checkpoint.sha256]), [[final.epoch, cut.sha256]]);
  const second = await runSweep(storeB, `iad-b-${tag}`);

  assert.equal(second.cellId, first.cellId, 'the same cell');
  const standard = stageOf(second, 'standardTraining');
  assert.equal(standard.cacheKey, standardKey, 'the regenerated data has the original digests');
  assert.equal(standard.cached, false, 'the attacker stage ran on store B');
  assert.equal(standard.resumedFromEpoch, MASK_EPOCHS + EPOCHS, 'from its final checkpoint');
  assert.deepEqual(await storeB.getRecord(attackerRecord), imported, 'no epoch trained: no checkpoint added');
  const entryB = (await storeB.getRecord<CacheEntry<TrainedModel>>(`cache/standardTraining/${standardKey}`))!;
  assert.deepEqual(entryB.output.history, entryA.output.history, 'the epochs of store A, restored, not retrained');
  // the outputs the later stages key on: the same digests
  const digests = (o: TrainedModel) => ({
    model: o.model.sha256,
    train: o.data!.train.sha256,
    backdoorTest: o.data!.backdoorTest?.sha256,
    poisoned: o.data!.poison?.poisonedIndices.sha256,
    cross: o.data!.poison?.crossIndices?.sha256,
    generators: o.data!.poison?.triggerParameters.generatorsSha256,
  });
  assert.deepEqual(digests(entryB.output), digests(entryA.output));
  const defense = second.stages!.find((s) => s.stage.startsWith('defense'))!;
  assert.equal(defense.cached, true, "FT's imported entry is hit: its key hashes those digests");
  assert.equal(second.purifiedModel!.sha256, first.purifiedModel!.sha256);
  assert.deepEqual(second.metrics, first.metrics);
  const exportedAgain = await exportBenchState(storeB, `iad-a-${tag}`, path.join(tmp, 'again.ntmlb'));
  assert.equal(exportedAgain.sha256, exported.sha256, 'store B exports the same bytes: the cut is exported as it is');

  // the older form (the full final checkpoint in place of the entry) still imports and gives the same cell
  const oldForm = await collectBundle(
    storeA,
    content.manifest.records.map((r) => r.key),
    { ...content.manifest.selection, leftOutCheckpoints: [{ ...cut, sha256: final.checkpoint.sha256, bytes: final.checkpoint.bytes }] },
    new Map([[attackerRecord, [final]]]),
  );
  const storeC = open('c');
  await importBundle(storeC, await decodeBundle(encodeBundle(oldForm), 'old-form.ntmlb'));
  assert.deepEqual(await storeC.getRecord(attackerRecord), [final]);
  const third = await runSweep(storeC, `iad-c-${tag}`);
  assert.equal(stageOf(third, 'standardTraining').resumedFromEpoch, MASK_EPOCHS + EPOCHS);
  assert.equal(third.stages!.find((s) => s.stage.startsWith('defense'))!.cached, true);
  assert.equal(third.purifiedModel!.sha256, first.purifiedModel!.sha256);
  assert.deepEqual(third.metrics, first.metrics);
  // a cut checkpoint that ends before the run does (rewritten consistently, so it imports): the
  // attacker stage refuses to train from it, naming its record, rather than restart the optimisers
  const storeD = open('d');
  await importBundle(storeD, content);
  const early = await storeD.put(encodeCheckpoint({ ...slim, epoch: MASK_EPOCHS + EPOCHS - 1 }));
  await storeD.putRecord(attackerRecord, [{ ...imported![0], epoch: MASK_EPOCHS + EPOCHS - 1, checkpoint: early }]);
  const refused = await sweepOutcome(storeD, `iad-d-${tag}`);
  assert.equal(refused.completed, 0);
  // the cell's failure, with its causes (the sweep's summary keeps the outer message)
  const causes: string[] = [];
  await client.workflow.getHandle(`sweep-iad-d-${tag}--${first.cellId}`).result().catch((e: unknown) => {
    for (let c = e as { message?: string; cause?: unknown } | undefined; c; c = c.cause as typeof c) causes.push(c.message ?? '');
  });
  assert.match(
    causes.join('\n'),
    new RegExp(`${attackerRecord} \\(${early.sha256}\\): the epoch ${MASK_EPOCHS + EPOCHS - 1} checkpoint is a finished run's final checkpoint \\(no optimiser state\\)`),
  );
  assert.deepEqual((await storeD.listRecords(`cache/standardTraining/${standardKey}`)).length, 0, 'nothing trained, nothing stored');

  console.log(
    `IAD ${MASK_EPOCHS}+${EPOCHS} epochs: bundle ${exported.bytes} bytes, final checkpoint ${final.checkpoint.bytes} bytes cut to ${cut.bytes}; store B resumed at epoch ${standard.resumedFromEpoch} ` +
      `in ${standard.seconds.toFixed(1)} s (store A: ${stageOf(first, 'standardTraining').seconds.toFixed(1)} s); ACC ${second.metrics!.standard.acc.toFixed(1)} ASR ${second.metrics!.standard.asr?.toFixed(1)}`,
  );
  await fsp.rm(tmp, { recursive: true, force: true });
});
