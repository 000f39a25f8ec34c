/**
 * The training worker is SIGKILLed once in each kind of stage of one ci-tier purification
 * (data preparation, the three trained stages, evaluation), a fresh worker process taking over
 * each time; the run must end with exactly the weights of the uninterrupted reference run.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ciConfig, inProcessWorkers, quietRuntime, referenceRun, spawnTrainingWorker, taskQueues, testClient, waitForExit } from './support/temporal';
import { storeFromEnv } from '../store/index';
import type { PurifyOutcome, PurifyProgress } from '../workflows/contract';

quietRuntime();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One stage of each kind; a kill waits this long into the stage, so trained stages have stored an epoch or two. */
const TARGETS: Record<string, number> = { prepareData: 0, standardTraining: 2_500, ntTraining: 2_500, mutualLearning: 2_500, evaluation: 0 };
/** The stages that take long enough on every machine that the kill cannot miss them. */
const MUST_HIT = ['standardTraining', 'ntTraining', 'mutualLearning'];

test('a training worker SIGKILLed in every kind of stage, replaced each time: the run ends with the uninterrupted weights', { timeout: 900_000 }, async () => {
  const reference = await referenceRun();
  const store = storeFromEnv();
  const queues = taskQueues('faults-worker');
  const workers = await inProcessWorkers({ orchestration: queues.orchestration });
  const { client, close } = await testClient();
  let worker = spawnTrainingWorker(queues.training);
  const killedIn: string[] = [];
  try {
    const result = await workers.run(async () => {
      const handle = await client.workflow.start('purify', {
        taskQueue: queues.orchestration,
        workflowId: `faults-worker-${Date.now()}`,
        args: [{ config: ciConfig(), options: { trainingTaskQueue: queues.training, heartbeatTimeoutSeconds: 4, cache: false } }],
      });
      const done = handle.result() as Promise<PurifyOutcome>;
      let finished = false;
      void done.finally(() => (finished = true)).catch(() => undefined);
      let stage = '';
      let stageSince = Date.now();
      while (!finished) {
        await sleep(100);
        let progress: PurifyProgress;
        try {
          progress = await handle.query<PurifyProgress>('progress');
        } catch {
          continue; // the workflow may close between the check and the query
        }
        if (progress.stage !== stage) {
          stage = progress.stage;
          stageSince = Date.now();
        }
        const wait = TARGETS[stage];
        if (wait === undefined || killedIn.includes(stage) || Date.now() - stageSince < wait) continue;
        worker.kill('SIGKILL');
        await waitForExit(worker);
        killedIn.push(stage);
        console.log(`killed the training worker in ${stage} (${((Date.now() - stageSince) / 1000).toFixed(1)} s into it)`);
        worker = spawnTrainingWorker(queues.training);
      }
      return done;
    });
    for (const stage of MUST_HIT) assert.ok(killedIn.includes(stage), `the worker was killed in ${stage}: ${killedIn.join(', ')}`);
    const report = JSON.parse(Buffer.from(await store.get(result.report)).toString('utf8')) as { stages: { stage: string; resumedFromEpoch?: number }[] };
    const resumed = report.stages.filter((s) => (s.resumedFromEpoch ?? 0) > 0).map((s) => `${s.stage} from epoch ${s.resumedFromEpoch}`);
    console.log(`killed in: ${killedIn.join(', ')}; resumed: ${resumed.join(', ') || 'none'}`);
    assert.ok(resumed.length >= 1, 'at least one trained stage resumed from a checkpoint rather than from scratch');
    assert.equal(result.purifiedModel.sha256, reference.outcome.purifiedModel.sha256, 'the same weights as the uninterrupted run');
  } finally {
    worker.kill('SIGKILL');
    await waitForExit(worker);
    await close();
  }
});
