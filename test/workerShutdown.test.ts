/**
 * SIGTERM during training (a deploy, a scale-down, a node drain) loses no finished epoch:
 * the training worker, a separate process as deployed, finishes and checkpoints the epoch it
 * is in, hands the stage back, and exits well inside its shutdown grace; the next worker
 * resumes from exactly that epoch and the stage's history still has every epoch once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inProcessWorkers, quietRuntime, spawnTrainingWorker, storedCheckpoints, taskQueues, testClient, waitForExit } from './support/temporal';
import { storeFromEnv } from '../store';
import type { PurifyOutcome, PurifyReport } from '../workflows/contract';
import type { PurifyInput } from '../workflows/contract';

quietRuntime();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const EPOCHS = 6;
/** standard training only (defense none): 800 images, 6 epochs of ~1-3 s each on 2 cores */
function config(seed: number) {
  return {
    name: 'sigterm',
    mode: 'evaluation',
    tier: 'ci',
    seed,
    data: { format: 'synthetic', trainSize: 800, testSize: 200 },
    attack: { name: 'badnets', target: 0, rate: 0.1 },
    cleanBudget: 60,
    defense: { name: 'none' },
    training: { epochs: EPOCHS },
  };
}

test('SIGTERM during training: the running epoch is checkpointed, the worker exits, the next one resumes from that epoch', { timeout: 600_000 }, async () => {
  const store = storeFromEnv();
  const queues = taskQueues('sigterm');
  const workers = await inProcessWorkers({ orchestration: queues.orchestration });
  const { client, close } = await testClient();
  const grace = 60;
  let worker = spawnTrainingWorker(queues.training, { NTML_SHUTDOWN_GRACE_SECONDS: String(grace) });
  const first = worker;
  const workflowId = `sigterm-${Date.now()}`;
  try {
    const result = await workers.run(async () => {
      const handle = await client.workflow.start('purify', {
        taskQueue: queues.orchestration,
        workflowId,
        args: [{ config: config(Date.now() % 100_000), options: { trainingTaskQueue: queues.training, cache: false } } satisfies PurifyInput],
      });

      // the checkpoint record of standard training, as the worker writes it after each epoch
      const epochsStored = async () => (await storedCheckpoints(store, `checkpoints/${workflowId}/`, 'standard')).map((e) => e.epoch);
      // wait for epoch 2 to be stored, then signal about a third into epoch 3
      let stored: number[] = [];
      let epochOneAt = 0;
      let epochTwoAt = 0;
      for (let i = 0; i < 1200 && !stored.includes(2); i++) {
        await sleep(100);
        stored = await epochsStored();
        if (stored.includes(1) && !epochOneAt) epochOneAt = Date.now();
        assert.equal(first.exitCode, null, `worker died early:\n${first.output()}`);
      }
      epochTwoAt = Date.now();
      assert.deepEqual(stored, [1, 2], 'epochs 1 and 2 checkpointed before the signal');
      await sleep(Math.max(100, (epochTwoAt - epochOneAt) / 3));
      const beforeSignal = Math.max(...(await epochsStored()));
      const signalledAt = Date.now();
      first.kill('SIGTERM');
      await waitForExit(first);
      const exitSeconds = (Date.now() - signalledAt) / 1000;
      const afterExit = await epochsStored();
      const lastFinished = Math.max(...afterExit);
      console.log(
        `epoch ${beforeSignal} stored at SIGTERM; the worker exited ${exitSeconds.toFixed(1)} s later (grace ${grace} s) with code ${first.exitCode}, ` +
          `last stored epoch ${lastFinished}`,
      );
      assert.equal(first.exitCode, 0, `graceful exit:\n${first.output()}`);
      // measured ~1-4 s (one epoch); the grace is what a worker without draining would wait out
      assert.ok(exitSeconds < grace / 2, `exited after the epoch, not at the end of the grace (${exitSeconds} s)`);
      assert.ok(lastFinished > beforeSignal, 'the epoch running at SIGTERM was finished and checkpointed');
      assert.ok(lastFinished < EPOCHS, 'the stage was handed over, not finished on the stopping worker');
      assert.deepEqual(afterExit, Array.from({ length: lastFinished }, (_, i) => i + 1), 'one checkpoint per finished epoch');
      assert.match(first.output(), /SIGTERM, stopping after the running epochs are checkpointed/);

      worker = spawnTrainingWorker(queues.training);
      const outcome = (await handle.result()) as PurifyOutcome;
      return { outcome, lastFinished };
    });

    const report = JSON.parse(Buffer.from(await store.get(result.outcome.report)).toString('utf8')) as PurifyReport;
    const standard = report.stages.find((s) => s.stage === 'standardTraining')!;
    assert.equal(standard.resumedFromEpoch, result.lastFinished, 'the next worker resumed from the last epoch the stopped one finished');
    assert.deepEqual(
      report.histories.standardTraining.map((h) => h.epoch),
      Array.from({ length: EPOCHS }, (_, i) => i + 1),
      'every epoch once in the stage history: none lost, none repeated',
    );
  } finally {
    worker.kill('SIGKILL');
    first.kill('SIGKILL');
    await close();
  }
});
