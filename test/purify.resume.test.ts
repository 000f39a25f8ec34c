/**
 * Resume: SIGKILL the training worker process during standard training, corrupt the newest
 * checkpoint behind the store's back, start a fresh worker. The stage must resume from the
 * newest checkpoint that still verifies (epoch > 0), report the corrupt one, and the run
 * must end with exactly the purified weights of the uninterrupted reference run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import {
  ciConfig,
  inProcessWorkers,
  quietRuntime,
  referenceRun,
  spawnTrainingWorker,
  storedCheckpoints,
  taskQueues,
  testClient,
  waitForExit,
} from './support/temporal';
import { storeFromEnv, S3ArtifactStore, parseS3Location } from '../store';
import { parsePurifyConfig } from '../schemas/purify';
import type { PurifyOutcome, PurifyReport } from '../workflows/contract';
import type { CheckpointEntry } from '../activities/checkpointing';

quietRuntime();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('a SIGKILLed training worker resumes from the newest verifying checkpoint and ends with identical weights', { timeout: 900_000 }, async () => {
  const reference = await referenceRun();
  const store = storeFromEnv();
  assert.ok(store instanceof S3ArtifactStore, 'runs against the S3 server');
  const queues = taskQueues('resume');
  const workers = await inProcessWorkers({ orchestration: queues.orchestration });
  const { client, close } = await testClient();
  let worker = spawnTrainingWorker(queues.training);
  try {
    const outcome = await workers.run(async () => {
      const handle = await client.workflow.start('purify', {
        taskQueue: queues.orchestration,
        workflowId: `resume-${Date.now()}`,
        args: [{ config: ciConfig(), options: { trainingTaskQueue: queues.training, heartbeatTimeoutSeconds: 4, cache: false } }],
      });

      // Watch the stage's checkpoint record in the store, not the server's heartbeat: the SDK
      // throttles heartbeats, so the server can lag epochs behind and the run could finish first.
      const { runId } = await handle.describe();
      const standardRecord = () => storedCheckpoints(store, `checkpoints/${handle.workflowId}/${runId}/`, 'standard');
      let seen: CheckpointEntry[] = [];
      for (let i = 0; i < 3000 && seen.length < 2; i++) {
        await sleep(50);
        seen = await standardRecord();
        if (i % 20 === 0) assert.ok(!(await handle.describe()).closeTime, 'workflow ended before the worker could be killed');
      }
      assert.ok(seen.length >= 2, `no second checkpoint of standard training seen: ${JSON.stringify(seen.map((e) => e.epoch))}`);
      worker.kill('SIGKILL');
      await waitForExit(worker);

      // the worker may have stored one more epoch between the last look and the kill
      const entries = await standardRecord();
      const newest = entries.at(-1)!;
      assert.ok(newest.epoch >= 2 && newest.epoch < parsePurifyConfig(ciConfig()).training.epochs, `killed mid-stage: ${JSON.stringify(entries.map((e) => e.epoch))}`);
      const killedAtEpoch = newest.epoch;

      // damage the newest checkpoint in place: same key, different bytes
      const { bucket, prefix } = parseS3Location(store.location);
      const sha = newest.checkpoint.sha256;
      await store.client.send(
        new PutObjectCommand({ Bucket: bucket, Key: `${prefix}cas/${sha.slice(0, 2)}/${sha}`, Body: Buffer.from('not a checkpoint') }),
      );
      assert.equal(await store.verify(newest.checkpoint), false);

      worker = spawnTrainingWorker(queues.training);
      const result = (await handle.result()) as PurifyOutcome;
      return { result, killedAtEpoch };
    });

    const report = JSON.parse(Buffer.from(await store.get(outcome.result.report)).toString('utf8')) as PurifyReport;
    const standard = report.stages.find((s) => s.stage === 'standardTraining')!;
    console.log(`killed after epoch ${outcome.killedAtEpoch}; resumed from epoch ${standard.resumedFromEpoch}; skipped: ${report.skippedCheckpoints.join(' | ')}`);
    assert.ok(standard.resumedFromEpoch! > 0, 'standard training resumed from a checkpoint, not from scratch');
    assert.ok(
      standard.resumedFromEpoch! < outcome.killedAtEpoch,
      'the corrupted newest checkpoint was not used',
    );
    assert.ok(
      report.skippedCheckpoints.some((s) => s.startsWith('standardTraining') && s.includes(`epoch ${outcome.killedAtEpoch}`)),
      `the corrupt checkpoint is reported: ${JSON.stringify(report.skippedCheckpoints)}`,
    );
    // exact resume: the same weights as the uninterrupted run with the same seed
    assert.equal(outcome.result.purifiedModel.sha256, reference.outcome.purifiedModel.sha256);
    assert.equal(report.models.standard.sha256, (await referenceReport()).models.standard.sha256);
  } finally {
    worker.kill('SIGKILL');
    await close();
  }

  async function referenceReport(): Promise<PurifyReport> {
    return JSON.parse(Buffer.from(await store.get(reference.outcome.report)).toString('utf8')) as PurifyReport;
  }
});
