/**
 * A ci-tier purification survives losing its Temporal dev server during standard training: the
 * server is SIGKILLed, the stack's supervisor (in this process) restarts it on the same port
 * with the same SQLite database, the workers and the client reconnect by themselves, and the
 * run ends with exactly the weights of an uninterrupted one.
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { ciConfig, inProcessWorkers, quietRuntime, referenceRun, spawnTrainingWorker, firstStandardCheckpoints, taskQueues, testClient, waitForExit } from './support/temporal';
import { isAlive, startLocalStack, temporalHealthy } from '../infra/stack/index';
import { storeFromEnv } from '../store/index';
import { parsePurifyConfig } from '../schemas/purify';
import type { PurifyOutcome } from '../workflows/contract';

quietRuntime();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('the Temporal dev server SIGKILLed mid-training comes back on its port and the run ends with the uninterrupted weights', { timeout: 900_000 }, async () => {
  const reference = await referenceRun(); // on the shared test stack
  const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'ntml-faults-temporal-'));
  // a private Temporal server, supervised by this process; the store stays the test stack's S3
  const stack = await startLocalStack({ dir: path.join(tmp, 'stack'), s3: false, log: (m) => console.log(`[private stack] ${m}`) });
  const address = stack.temporal!.address;
  process.env.NTML_TEMPORAL_ADDRESS = address; // for the helpers below (this file runs in its own process)
  const store = storeFromEnv();
  const queues = taskQueues('faults-temporal');
  const workers = await inProcessWorkers({ orchestration: queues.orchestration });
  const { client, close } = await testClient();
  const worker = spawnTrainingWorker(queues.training, { NTML_TEMPORAL_ADDRESS: address });
  try {
    const outcome = await workers.run(async () => {
      const handle = await client.workflow.start('purify', {
        taskQueue: queues.orchestration,
        workflowId: `faults-temporal-${Date.now()}`,
        args: [{ config: ciConfig(), options: { trainingTaskQueue: queues.training, cache: false, heartbeatTimeoutSeconds: 30 } }],
      });
      const { runId } = await handle.describe();
      const epochs = await firstStandardCheckpoints(store, handle, runId);
      const victim = stack.temporal!.pid;
      process.kill(victim, 'SIGKILL');
      const t0 = Date.now();
      while (stack.temporal!.pid === victim && Date.now() - t0 < 120_000) await sleep(100);
      assert.equal(isAlive(victim), false);
      assert.notEqual(stack.temporal!.pid, victim, 'the supervisor restarted the Temporal dev server');
      assert.equal(stack.temporal!.address, address, 'on the same port');
      assert.equal(await temporalHealthy(address), true);
      console.log(`Temporal back ${Date.now() - t0} ms after SIGKILL (standard-training epochs stored: ${epochs.join(',')})`);
      const result = (await handle.result()) as PurifyOutcome;
      return { result, epochsAtKill: epochs };
    });
    assert.ok(outcome.epochsAtKill.at(-1)! < parsePurifyConfig(ciConfig()).training.epochs, `killed mid-stage: ${outcome.epochsAtKill.join(',')}`);
    assert.equal(outcome.result.purifiedModel.sha256, reference.outcome.purifiedModel.sha256, 'the same weights as the uninterrupted run');
  } finally {
    worker.kill('SIGKILL');
    await waitForExit(worker);
    await close();
    await stack.stop();
    await fsp.rm(tmp, { recursive: true, force: true });
  }
});
