/**
 * A sweep whose cells differ only in what a learned trigger does not read (Narcissus at two
 * rates) learns the trigger once: the second cell waits in the first one's shared-stage group and
 * finds the trigger in the learned-trigger cache (the real Temporal server and S3 store).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Client } from '@temporalio/client';
import { inProcessWorkers, quietRuntime, taskQueues, testClient } from './support/temporal';
import { tinySweep } from './support/tinySweep';
import { storeFromEnv } from '../store';
import type { SweepSpecInput } from '../schemas/sweep';
import type { PurifyReport, SweepOutcome } from '../workflows/contract';
import { cellRecords } from './support/sweepFaults';

quietRuntime();

let client: Client;
let close: () => Promise<void>;
before(async () => ({ client, close } = await testClient()));
after(async () => close());

test('cells that differ only in what a learned trigger does not read (Narcissus rates) learn it once: the rest wait and reuse it', { timeout: 900_000 }, async () => {
  const name = `trigger-group-${Date.now().toString(36)}`;
  const queues = taskQueues('sweep-trigger');
  const workers = await inProcessWorkers(queues);
  const narcissus = (rate: number) => ({
    name: 'narcissus' as const,
    target: 0,
    rate,
    surrogateArch: 'tinyCnn',
    surrogateEpochs: 1,
    warmupRounds: 1,
    triggerRounds: 40,
    batchSize: 32,
    pood: { format: 'synthetic', size: 100, numClasses: 4 },
  });
  // concurrency 2: before the groups knew learned triggers, both cells started at once and each learned it
  const grid: SweepSpecInput['grid'] = { attack: [narcissus(0.02), narcissus(0.05)], defense: [{ name: 'none' }], seed: [1] };
  const outcome = await workers.run(
    () =>
      client.workflow.execute('sweep', {
        taskQueue: queues.orchestration,
        workflowId: `sweep-${name}`,
        args: [{ spec: tinySweep(name, grid, { mlEpochs: null }), options: { trainingTaskQueue: queues.training } }],
      }) as Promise<SweepOutcome>,
  );
  assert.equal(outcome.completed, 2, JSON.stringify(outcome.failed));
  const store = storeFromEnv();
  const records = await cellRecords(name);
  const reports = await Promise.all(records.map(async (r) => JSON.parse(Buffer.from(await store.get(r.report!)).toString('utf8')) as PurifyReport));
  const reused = reports.map((r) => r.data.triggerReusedFrom);
  assert.equal(reused.filter((x) => x === undefined).length, 1, `one cell learned the trigger: ${JSON.stringify(reused)}`);
  const learner = records[reused.indexOf(undefined)];
  const follower = records[reused.findIndex((x) => x !== undefined)];
  assert.match(reused.find((x) => x !== undefined)!, /learnedTrigger [0-9a-f]{12}/);
  const prepareSeconds = learner.stages!.find((s) => s.stage === 'prepareData')!.seconds;
  assert.ok((follower.startedAt - learner.startedAt) / 1000 >= prepareSeconds, 'the follower started after the trigger was learned');
  // the two poisoned training sets differ (two rates), the trigger is one
  assert.notEqual(
    follower.stages!.find((s) => s.stage === 'prepareData')!.cacheKey,
    learner.stages!.find((s) => s.stage === 'prepareData')!.cacheKey,
  );
});

