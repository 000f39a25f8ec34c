/**
 * Resume of a learned trigger: Narcissus's trigger optimisation (hours at the paper's budget)
 * runs inside the prepareData activity. SIGKILL the training worker in the middle of it, start
 * a fresh worker: the activity continues from the newest stored round (not from scratch) and
 * ends with exactly the trigger of an uninterrupted run in the same kind of worker. With the
 * stage cache on, a new run of the same computation (the interrupted run terminated) does too.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultPayloadConverter } from '@temporalio/common';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { ciConfig, inProcessWorkers, quietRuntime, spawnTrainingWorker, taskQueues, testClient, waitForExit } from './support/temporal';
import type { TrainingHeartbeat } from '../activities/checkpointing';
import type { DataRefs } from '../workflows/contract';

quietRuntime();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const ROUNDS = 200;
const KILL_AFTER = ROUNDS / 10;
const config = ciConfig({
  name: 'ci-narcissus-resume',
  data: { format: 'synthetic', trainSize: 1000, testSize: 200 },
  attack: {
    name: 'narcissus',
    target: 0,
    rate: 0.05,
    surrogateArch: 'tinyCnn',
    surrogateEpochs: 1,
    warmupRounds: 1,
    triggerRounds: ROUNDS,
    batchSize: 32,
    pood: { format: 'synthetic', size: 100, numClasses: 4 },
  },
});

/** prepareData's result, read from the workflow history once the activity completed. */
async function preparedData(handle: WorkflowHandle): Promise<DataRefs | undefined> {
  const history = await handle.fetchHistory();
  const scheduled = new Set<string>();
  for (const e of history.events ?? []) {
    if (e.activityTaskScheduledEventAttributes?.activityType?.name === 'prepareData') scheduled.add(String(e.eventId));
    const done = e.activityTaskCompletedEventAttributes;
    if (done && scheduled.has(String(done.scheduledEventId))) {
      return defaultPayloadConverter.fromPayload<DataRefs>(done.result!.payloads![0]);
    }
  }
  return undefined;
}

async function untilPrepared(handle: WorkflowHandle): Promise<DataRefs> {
  for (let i = 0; i < 2400; i++) {
    const data = await preparedData(handle);
    if (data) return data;
    await sleep(250);
  }
  throw new Error('prepareData did not complete in 10 minutes');
}

function start(client: Client, queues: { orchestration: string; training: string }, tag: string, cache: boolean): Promise<WorkflowHandle> {
  return client.workflow.start('purify', {
    taskQueue: queues.orchestration,
    workflowId: `narcissus-resume-${tag}-${Date.now()}`,
    args: [{ config, options: { trainingTaskQueue: queues.training, heartbeatTimeoutSeconds: 4, cache } }],
  });
}

/** Waits for a heartbeat of prepareData announcing a stored trigger checkpoint at round >= KILL_AFTER. */
async function untilCheckpointed(handle: WorkflowHandle): Promise<TrainingHeartbeat & { checkpoint: object }> {
  let beat: TrainingHeartbeat | undefined;
  for (let i = 0; i < 2400 && !(beat?.checkpoint && beat.epoch >= KILL_AFTER); i++) {
    await sleep(100);
    const d = await handle.describe();
    const pending = d.raw.pendingActivities?.find((a) => a.activityType?.name === 'prepareData');
    const payload = pending?.heartbeatDetails?.payloads?.[0];
    if (payload) beat = defaultPayloadConverter.fromPayload<TrainingHeartbeat>(payload);
    assert.equal(await preparedData(handle), undefined, 'prepareData ended before the worker could be killed');
  }
  assert.ok(beat?.checkpoint && beat.epoch >= KILL_AFTER, `no trigger checkpoint heartbeat seen (last: ${JSON.stringify(beat)})`);
  return beat as TrainingHeartbeat & { checkpoint: object };
}

test('a killed Narcissus trigger optimisation continues from its newest round, in the same run or in a new run of the same computation, with the uninterrupted trigger', { timeout: 900_000 }, async () => {
  const queues = taskQueues('narcissus-resume');
  const workers = await inProcessWorkers({ orchestration: queues.orchestration });
  const { client, close } = await testClient();
  let worker = spawnTrainingWorker(queues.training);
  const killWorker = async () => {
    worker.kill('SIGKILL');
    await waitForExit(worker);
    worker = spawnTrainingWorker(queues.training);
  };
  try {
    const runs = await workers.run(async () => {
      // 1. cache on: the run dies with its worker and is terminated, as `ntml sweep` does with a
      //    run an interrupted command left; a new run of the same config continues its checkpoints
      const first = await start(client, queues, 'first', true);
      const firstBeat = await untilCheckpointed(first);
      await killWorker();
      await first.terminate('narcissus resume test: the command that ran it was interrupted');
      const second = await start(client, queues, 'second', true);
      const continued = await untilPrepared(second);
      await second.terminate('narcissus resume test: only prepareData is under test');

      // 2. the reference: the same computation uninterrupted, from scratch (cache off)
      const ref = await start(client, queues, 'reference', false);
      const reference = await untilPrepared(ref);
      await ref.terminate('narcissus resume test: only prepareData is under test');

      // 3. cache off: the retried activity of the same run continues from the run's own checkpoints
      const same = await start(client, queues, 'same-run', false);
      const sameBeat = await untilCheckpointed(same);
      await killWorker();
      const retried = await untilPrepared(same);
      await same.terminate('narcissus resume test: only prepareData is under test');
      return { continued, firstKilledAt: firstBeat.epoch, reference, retried, sameKilledAt: sameBeat.epoch };
    });
    const { continued, reference, retried } = runs;
    console.log(
      `new run: killed after round ${runs.firstKilledAt} of ${ROUNDS}, continued from ${continued.resumedFromEpoch}; ` +
        `same run: killed after ${runs.sameKilledAt}, continued from ${retried.resumedFromEpoch}`,
    );
    assert.equal(reference.resumedFromEpoch, undefined, 'the reference ran from the start');
    assert.ok((continued.resumedFromEpoch ?? 0) >= runs.firstKilledAt, 'the new run continued from the terminated run\'s newest round');
    assert.ok((retried.resumedFromEpoch ?? 0) >= runs.sameKilledAt, 'the retried activity continued from its newest round, not from scratch');
    for (const [what, d] of [['new run', continued], ['same run', retried]] as const) {
      assert.ok(d.resumedFromEpoch! < ROUNDS);
      assert.equal(d.poison!.triggerParameters.perturbation, reference.poison!.triggerParameters.perturbation, `${what}: the uninterrupted trigger bytes`);
      assert.deepEqual(d.poison!.triggerParameters.triggerLoss, reference.poison!.triggerParameters.triggerLoss);
      assert.equal(d.train.sha256, reference.train.sha256, `${what}: the same poisoned training set`);
    }
  } finally {
    worker.kill('SIGKILL');
    await close();
  }
});
