/**
 * A stage in progress carried to a fresh store by a bundle, on the real stack (the sitting of
 * bench/run-cpu.sh on a new machine, issue 21): a one-cell ci-tier sweep runs against store A
 * with its training worker in a process of its own; once standard training has stored a
 * checkpoint (with epochs left) the worker is SIGKILLed and the sweep terminated. `ntml store
 * export --in-progress` writes the sweep's state, with that checkpoint, to a bundle; `ntml store
 * import` loads it into a fresh store B (another S3 prefix: nothing else of A is there), and the
 * same spec against B continues standard training from the imported epoch, not from zero, and
 * ends with exactly the purified weights of an uninterrupted run on a third fresh store. The
 * same bundle with one byte of the checkpoint flipped is refused, naming the checkpoint.
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { after, before, test } from 'node:test';
import type { Client } from '@temporalio/client';
import { inProcessWorkers, quietRuntime, runSweepOnStore, spawnTrainingWorker, taskQueues, testClient, waitForExit } from './support/temporal';
import { tinySweep } from './support/tinySweep';
import { decodeBundle, openStore, parseS3Location, s3OptionsFromEnv, type ArtifactStore } from '../store';
import { storeExport, storeImport } from '../cli/storeBundle';
import { UserError } from '../cli/errors';
import type { CheckpointEntry } from '../activities/checkpointing';
import type { SweepCellRecord } from '../workflows/contract';
import { captureIo, withStoreEnv } from './support/cliIo';

quietRuntime();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let client: Client;
let close: () => Promise<void>;
before(async () => ({ client, close } = await testClient()));
after(async () => close());

const EPOCHS = 6;
const name = `inprogress-${Date.now().toString(36)}`;
// one NT-ML cell; standard training long enough that a checkpoint is stored with epochs left
const spec = tinySweep(name, { attack: [{ name: 'badnets', target: 5 }], defense: [{ name: 'ntml' }], seed: [1] }, { epochs: EPOCHS, mlEpochs: 3, concurrency: 1 });

const { bucket } = parseS3Location(process.env.NTML_STORE ?? 's3://missing/');
const freshLocation = (tag: string) => `s3://${bucket}/inprogress-${tag}-${randomBytes(6).toString('hex')}`;
const open = (location: string) => openStore(location, { s3: s3OptionsFromEnv() });

const capture = captureIo;
/** A CLI handler against the store at `location` (as NTML_STORE). */
const cli = withStoreEnv;

/** The whole sweep on `store` with in-process workers; its one cell record. */
async function runSweep(store: ArtifactStore, tag: string): Promise<SweepCellRecord> {
  const outcome = await runSweepOnStore(client, store, spec, `inprogress-${tag}`, `sweep-${name}-${tag}`);
  assert.equal(outcome.completed, 1, JSON.stringify(outcome.failed));
  const keys = await store.listRecords(`sweeps/${name}/cells/`);
  assert.equal(keys.length, 1);
  return (await store.getRecord<SweepCellRecord>(keys[0]))!;
}

const standardOf = (r: SweepCellRecord) => r.stages!.find((s) => s.stage === 'standardTraining')!;

test('a sweep stopped mid-stage on one store continues that stage on a fresh store from the bundle, with the uninterrupted weights', { timeout: 900_000 }, async () => {
  assert.ok(process.env.NTML_STORE?.startsWith('s3://'), 'run through test/support/runTests.js: it starts the S3 server');
  const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'ntml-inprogress-e2e-'));

  // store A: the sitting that stops mid-stage (its machine goes away: SIGKILL of the training worker)
  const locationA = freshLocation('a');
  const storeA = open(locationA);
  const queues = taskQueues('inprogress-a');
  const orchestration = await inProcessWorkers({ orchestration: queues.orchestration });
  const worker = spawnTrainingWorker(queues.training, { NTML_STORE: locationA });
  let atKill: CheckpointEntry[] = [];
  try {
    await orchestration.run(async () => {
      const handle = await client.workflow.start('sweep', {
        taskQueue: queues.orchestration,
        workflowId: `sweep-${name}-a`,
        args: [{ spec, options: { trainingTaskQueue: queues.training } }],
      });
      const standard = async (): Promise<CheckpointEntry[]> => {
        const key = (await storeA.listRecords('checkpoints/stage/')).find((k) => k.endsWith('/standard'));
        return key ? ((await storeA.getRecord<CheckpointEntry[]>(key)) ?? []) : [];
      };
      const deadline = Date.now() + 300_000;
      while ((await standard()).length === 0 && Date.now() < deadline) await sleep(50);
      worker.kill('SIGKILL');
      await waitForExit(worker);
      atKill = await standard();
      await handle.terminate('the test stops this sitting mid-stage');
    });
  } finally {
    worker.kill('SIGKILL');
  }
  assert.ok(atKill.length >= 1, `standard training stored no checkpoint in store A; worker output:\n${worker.output()}`);
  const killedAt = Math.max(...atKill.map((e) => e.epoch));
  assert.ok(killedAt >= 1 && killedAt < EPOCHS, `stopped mid-stage: epochs ${atKill.map((e) => e.epoch).join(',')} of ${EPOCHS}`);
  assert.deepEqual(await storeA.listRecords('cache/standardTraining/'), [], 'standard training had not finished in store A');
  assert.match(atKill.at(-1)!.workflowId ?? '', new RegExp(`^sweep-${name}-a--[0-9a-f]+$`), 'the entry names the cell workflow that wrote it');

  // the export with the stage in progress: its newest checkpoint alone, with its digest and size
  const bundle = path.join(tmp, 'sweep.ntmlb');
  const exported = capture();
  assert.equal(await cli(locationA, () => storeExport({ options: { sweep: name, out: bundle, 'in-progress': true }, positionals: [], help: false }, exported.io)), 0);
  const file = await fsp.readFile(bundle);
  const { manifest } = await decodeBundle(file, bundle);
  const inProgress = manifest.selection.inProgress as Array<{ record: string; epoch: number; sha256: string; bytes: number }>;
  assert.equal(inProgress.length, 1, exported.printed());
  assert.match(inProgress[0].record, /^checkpoints\/stage\/[0-9a-f]{64}\/standard$/);
  assert.equal(inProgress[0].epoch, killedAt);
  const newest = atKill.find((e) => e.epoch === killedAt)!;
  assert.deepEqual({ sha256: inProgress[0].sha256, bytes: inProgress[0].bytes }, { sha256: newest.checkpoint.sha256, bytes: newest.checkpoint.bytes });
  const checkpointShas = new Set(atKill.map((e) => e.checkpoint.sha256));
  assert.deepEqual(manifest.artifacts.filter((a) => checkpointShas.has(a.sha256)).map((a) => a.sha256), [newest.checkpoint.sha256], 'only the newest checkpoint, not the history');

  // (c) one byte of the checkpoint flipped: refused by name, nothing written
  const body = Buffer.from(gunzipSync(file));
  const recordsEnd = 16 + body.readUInt32BE(12) + manifest.records.reduce((n, r) => n + r.bytes, 0);
  const victim = manifest.artifacts.findIndex((a) => a.sha256 === newest.checkpoint.sha256);
  body[recordsEnd + manifest.artifacts.slice(0, victim).reduce((n, a) => n + a.bytes, 0) + Math.floor(newest.checkpoint.bytes / 2)] ^= 0x01;
  const tampered = path.join(tmp, 'tampered.ntmlb');
  await fsp.writeFile(tampered, gzipSync(body));
  const locationC = freshLocation('c');
  await assert.rejects(
    cli(locationC, () => storeImport({ options: {}, positionals: [tampered], help: false }, capture().io)),
    (err: Error) =>
      err instanceof UserError &&
      err.message.includes(`artifact ${newest.checkpoint.sha256} (the epoch ${killedAt} checkpoint of ${inProgress[0].record}) does not match its sha256`) &&
      /nothing was written/.test(err.message),
  );
  assert.deepEqual(await open(locationC).listRecords(''), [], 'the tampered bundle wrote no record');

  // store B, fresh: the import, then the same spec
  const locationB = freshLocation('b');
  assert.equal(await cli(locationB, () => storeImport({ options: {}, positionals: [bundle], help: false }, capture().io)), 0);
  const storeB = open(locationB);
  assert.deepEqual(await storeB.getRecord(inProgress[0].record), [newest]);
  const resumed = await runSweep(storeB, 'b');

  // the uninterrupted run, on a third fresh store
  const reference = await runSweep(open(freshLocation('r')), 'r');

  // (a) standard training continued from the imported epoch
  assert.equal(standardOf(resumed).cached, false, 'standard training ran in store B (it was not finished anywhere)');
  assert.equal(standardOf(resumed).resumedFromEpoch, killedAt, 'store B resumed standard training from the imported checkpoint');
  assert.ok(!standardOf(reference).resumedFromEpoch, 'the reference ran standard training from epoch 0');
  // (b) the same weights as the uninterrupted run
  assert.equal(resumed.cellId, reference.cellId);
  assert.equal(resumed.purifiedModel!.sha256, reference.purifiedModel!.sha256, 'the purified weights of the uninterrupted run');
  assert.deepEqual(resumed.metrics, reference.metrics);
  console.log(
    `stopped after standard-training epoch ${killedAt} of ${EPOCHS}; bundle ${file.byteLength} bytes, checkpoint ${newest.checkpoint.bytes} bytes; ` +
      `store B resumed from epoch ${standardOf(resumed).resumedFromEpoch}; purified sha256 ${resumed.purifiedModel!.sha256.slice(0, 12)} in both`,
  );
  await fsp.rm(tmp, { recursive: true, force: true });
});
